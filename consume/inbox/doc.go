// Package inbox makes a consumer's handling of each message happen once in
// effect, although brokers deliver messages at least once.
//
// A handler made by [Inbox.Handler] receives a database transaction. Before
// calling it, the inbox records the message's id in its table in that
// transaction; the handler's writes and the record then commit together or
// not at all. A redelivered message finds its record and is acknowledged
// without running the handler again; a message whose handler failed left
// no record and is processed in full when the consumer retries it.
//
//	ib, err := inbox.New(db, "postgres", inbox.Options{})
//	...
//	if err := ib.Migrate(ctx); err != nil { ... }
//	go ib.Run(ctx) // deletes expired records
//	router.Event("orders", "OrderPlaced", ib.Handler("billing",
//		func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
//			_, err := tx.ExecContext(ctx, `INSERT INTO invoices ...`, ...)
//			return err
//		}))
//
// # What it guarantees
//
// The writes a handler makes through its transaction, in the inbox's
// database, happen once for each message id and consumer name, as long as
// the record is kept (see Retention). This holds through crashes,
// redeliveries, retries and concurrent deliveries: when one message is
// delivered to two goroutines or processes at once, the second waits on
// the table's primary key until the first transaction ends, and is then
// skipped if the first committed or processed if it rolled back. A commit
// whose outcome is unknown (the connection broke) returns an error; the
// consumer's retry finds the record if the commit happened.
//
// Nothing else is covered. Side effects outside the transaction (an HTTP
// call, an e-mail, a message published straight to a broker, a write to
// another database) happen again whenever the handler fails, or the
// process dies, after them and before the commit. Either make them
// idempotent, for example by passing the message id as the idempotency
// key of the API you call, or move them out of the handler: write them
// as outbox messages in the same transaction with ferry's Outbox.Write
// (the outbox table must then be in the inbox's database) and let the
// relay perform them, which again delivers at least once with a stable
// id.
//
// The consumer name scopes the ids: each consumer of a message, under its
// own name, processes it once. Use a stable name, such as the consumer
// group's; renaming a consumer forgets what it processed.
//
// # Message ids
//
// Every message needs a unique id that stays the same across
// redeliveries; ferry's outbox gives each message one. A message with no
// id, or with one longer than [MaxIDLen] bytes, not valid UTF-8 or
// containing a NUL byte, cannot be deduplicated: its handler fails with a
// [consume.Permanent] error and the message goes to the dead letters. Ids
// are compared byte for byte, so "Order-1", "order-1" and "order-1 " are
// three messages on every database.
//
// # Retention
//
// The table gains a row per message and consumer. [Inbox.Cleanup] deletes
// the rows older than Options.Retention (7 days unless set), in batches of
// 1000 so that it never holds locks for long; [Inbox.Run] calls it every
// hundredth of the retention, between one minute and one hour. A message
// delivered again after its record was deleted is processed again, so
// choose a retention longer than the broker may redeliver or replay: the
// redelivery window, a consumer group's offsets reset to the start of a
// topic, dead letters a person replays. Ages are measured by the
// database's clock.
//
// # The table
//
// [Inbox.Migrate] creates the table (named by Options.Table, "ferry_inbox"
// by default) and its index; a schema migration tool can create them
// instead with these statements. On PostgreSQL:
//
//	CREATE TABLE ferry_inbox (
//		consumer     TEXT        COLLATE "C" NOT NULL,
//		message_id   TEXT        COLLATE "C" NOT NULL,
//		processed_at TIMESTAMPTZ NOT NULL,
//		PRIMARY KEY (consumer, message_id)
//	);
//	CREATE INDEX ferry_inbox_processed_at ON ferry_inbox (processed_at);
//
// On MariaDB and MySQL, where processed_at is in UTC:
//
//	CREATE TABLE ferry_inbox (
//		consumer     VARBINARY(255) NOT NULL,
//		message_id   VARBINARY(255) NOT NULL,
//		processed_at DATETIME(6)    NOT NULL,
//		PRIMARY KEY (consumer, message_id),
//		KEY ix_processed_at (processed_at)
//	) ENGINE = InnoDB;
//
// On SQLite, where processed_at is UTC text like "2006-01-02
// 15:04:05.000000", as in ferry's SQLite store:
//
//	CREATE TABLE ferry_inbox (
//		consumer     TEXT NOT NULL,
//		message_id   TEXT NOT NULL,
//		processed_at TEXT NOT NULL,
//		PRIMARY KEY (consumer, message_id)
//	);
//	CREATE INDEX ferry_inbox_processed_at ON ferry_inbox (processed_at);
//
// # Databases
//
// The handler's transaction stays open while it runs, and a concurrent
// duplicate waits for it, so keep handlers short: no slow calls inside.
//
// On PostgreSQL the transaction has the database's default isolation.
// Under READ COMMITTED, PostgreSQL's default, a waiting duplicate is
// skipped as soon as the first commits; under REPEATABLE READ or
// SERIALIZABLE it fails with a serialization error instead, and its retry
// is skipped. Programs that use pgx rather than database/sql can use
// [Inbox.PgxHandler].
//
// On MariaDB and MySQL a waiting duplicate gives up after
// innodb_lock_wait_timeout (50 s by default) and is retried. When the
// first delivery rolls back, InnoDB may end some of the waiting ones as
// deadlock victims; they too fail, are retried and skipped. The inbox
// works with any go-sql-driver/mysql DSN: it needs none of the settings
// of ferry's own store.
//
// SQLite lets one transaction write at a time, so the handlers of all
// consumers on one database file run one after another, each holding the
// write lock from the record to the commit. Open the database with a busy
// timeout, as ferry's store/sqlite does, or concurrent handlers fail with
// SQLITE_BUSY instead of waiting.
package inbox
