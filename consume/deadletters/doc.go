// Package deadletters keeps a consumer's dead letters in a SQL table, from
// where a person lists them and, once the cause is fixed, replays them
// through ferry's outbox or discards them.
//
// A [Table] is a [consume.DeadLetterer]: the messages a consumer gives up
// on, after its retry budget or at once for a permanent error, are stored
// whole (id, source, topic, key, type, headers, payload, time of
// occurrence) with the consumer's name, the last error, the number of
// attempts and the time, as DEAD letters. The consumer acknowledges a
// message once its letter is committed, so nothing is lost in between.
//
//	dead, err := deadletters.New(db, "postgres", deadletters.Options{})
//	...
//	if err := dead.Migrate(ctx); err != nil { ... }
//	c, err := consume.New(consume.Options{Name: "billing", DeadLetter: dead, ...})
//
// The ferry command works on the table: ferry dlq list, ferry dlq replay
// and ferry dlq discard; programs call [Table.List], [Table.Replay] and
// [Table.Discard].
//
// # Replay
//
// [Table.Replay] writes DEAD letters back into ferry's transactional
// outbox, as new messages, and the relay publishes them again through its
// routes: durably, with its retries, and in key order. Each replayed
// message is the dead one with a new id (the outbox skips an id it has
// already), derived from the original as ID:replay:SEQ, and the original
// id in the header [HeaderReplayOf]. Its topic is the producer's topic, so
// that the relay's routes send it where it went the first time, unless
// [Replayer] names another.
//
// The outbox rows and the letters' change to REPLAYED are written in one
// transaction on the dead-letter table's database: a letter is REPLAYED if
// and only if its message is in the outbox, through crashes and
// concurrent replays, and replaying a REPLAYED letter does nothing. That
// transaction writes to the outbox table of that database, named by the
// Replayer's store, so the dead-letter table and the outbox must be in the
// same database, and a relay must serve that outbox. If the database has
// no such outbox table, the replay fails and changes nothing. A store of
// another database cannot take part in the transaction at all: Replay
// refuses a store of another kind of database, but cannot tell two
// databases of the same kind apart, and the messages would then sit in an
// outbox table of the dead-letter table's database that no relay reads.
// With the dead letters elsewhere, list them and write them to the
// outbox yourself, accepting that a crash between the two steps replays
// a letter twice or not at all.
//
// A replay publishes the messages to their topic again, so every consumer
// of the topic receives them, not only the one that gave up, and under new
// ids, which deduplication by message id (see package inbox) does not
// recognize. Either make the other consumers skip messages they have
// processed by the [HeaderReplayOf] header too, or replay to a topic only
// the failing consumer reads, with Replayer.Topic (ferry dlq replay
// --topic).
//
// Letters are replayed in batches of 500, each batch in a transaction of
// its own, in the order the messages died. A batch that fails (a message
// the outbox refuses, say for a payload over its limit) changes nothing,
// and Replay returns the letters replayed by the batches before it.
//
// # Idempotence
//
// A consumer may give up on one message more than once: the broker
// redelivers it when the acknowledgement after its dead letter was lost,
// or two instances of a consumer received it during a rebalance. While
// its letter is DEAD, the letter of a consumer and message id is stored
// once: a new death updates its reason, time and attempts. After the
// letter is replayed or discarded, a new death of the message is a new
// letter. Messages without an id cannot be recognized and are stored each
// time.
//
// # The table
//
// [Table.Migrate] creates the table (named by Options.Table,
// "ferry_dead_letters" by default) and its indexes; a schema migration
// tool can create them instead with these statements. On PostgreSQL:
//
//	CREATE TABLE ferry_dead_letters (
//		seq          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
//		consumer     TEXT        COLLATE "C" NOT NULL,
//		message_id   TEXT        COLLATE "C" NOT NULL,
//		source       TEXT        COLLATE "C" NOT NULL,
//		topic        TEXT        COLLATE "C" NOT NULL,
//		msg_key      TEXT        COLLATE "C" NOT NULL,
//		message_type TEXT        COLLATE "C" NOT NULL,
//		headers      TEXT        NOT NULL,   -- a JSON object
//		payload      BYTEA       NOT NULL,
//		occurred_at  TIMESTAMPTZ,
//		reason       TEXT        NOT NULL,
//		attempts     INTEGER     NOT NULL,
//		dead_at      TIMESTAMPTZ NOT NULL,
//		status       TEXT        NOT NULL CHECK (status IN ('DEAD', 'REPLAYED', 'DISCARDED')),
//		replayed_at  TIMESTAMPTZ,
//		replay_id    TEXT
//	);
//	CREATE UNIQUE INDEX ferry_dead_letters_dead ON ferry_dead_letters (consumer, message_id)
//		WHERE status = 'DEAD' AND message_id <> '';
//	CREATE INDEX ferry_dead_letters_status ON ferry_dead_letters (status, seq);
//
// On SQLite the same, with INTEGER PRIMARY KEY AUTOINCREMENT for seq, TEXT
// for the times (UTC, like "2006-01-02 15:04:05.000000", as in ferry's
// SQLite store) and BLOB for the payload. On MariaDB and MySQL, which have
// no partial index, a generated column stands in for its condition:
//
//	CREATE TABLE ferry_dead_letters (
//		seq          BIGINT          NOT NULL AUTO_INCREMENT PRIMARY KEY,
//		consumer     VARBINARY(1024) NOT NULL,
//		message_id   VARBINARY(1024) NOT NULL,
//		source       VARBINARY(1024) NOT NULL,
//		topic        VARBINARY(1024) NOT NULL,
//		msg_key      VARBINARY(1024) NOT NULL,
//		message_type VARBINARY(1024) NOT NULL,
//		headers      MEDIUMBLOB      NOT NULL,
//		payload      LONGBLOB        NOT NULL,
//		occurred_at  DATETIME(6),
//		reason       BLOB            NOT NULL,
//		attempts     INT             NOT NULL,
//		dead_at      DATETIME(6)     NOT NULL,
//		status       VARBINARY(16)   NOT NULL CHECK (status IN ('DEAD', 'REPLAYED', 'DISCARDED')),
//		replayed_at  DATETIME(6),
//		replay_id    VARBINARY(1024),
//		dead_unique  TINYINT AS (CASE WHEN status = 'DEAD' AND message_id <> '' THEN 1 END) STORED,
//		UNIQUE KEY ux_dead (consumer, message_id, dead_unique),
//		KEY ix_status (status, seq)
//	) ENGINE = InnoDB;
//
// The times there are in UTC: a DSN with parseTime must keep the driver's
// default loc, UTC, as ferry's store/mysql does.
//
// Letters are never deleted by this package; delete settled ones with SQL
// when they are no longer of interest.
package deadletters
