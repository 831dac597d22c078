package deadletters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry"
)

// HeaderReplayOf is the header a replayed message carries: the id of the
// message it replays, the first one if that was itself a replay.
// Consumers that deduplicate by message id can deduplicate by this header
// too, since the replay has an id of its own.
const HeaderReplayOf = "replay-of"

// batchSize is how many letters one transaction of Replay or Discard
// settles: few enough to keep the transaction and its memory small.
const batchSize = 500

// Replayer says where Replay writes the dead letters: into ferry's outbox,
// from where the relay publishes them again through its routes.
type Replayer struct {
	// Store is the outbox's store. Required. Replay writes with it in a
	// transaction on the dead-letter table's database, so the outbox
	// table it names must be in that database (see the package
	// documentation).
	Store ferry.Store
	// Topic, if set, is the outbox topic of every replayed message.
	// Otherwise each keeps its producer's topic, or, if it had none
	// (a message not published by ferry), the source it was read from.
	Topic string
	// Lane is the outbox lane of the replayed messages; ferry.DefaultLane
	// if empty.
	Lane string
}

// Replay writes the DEAD letters matching f into the outbox, each as a new
// message, and marks them REPLAYED, in one transaction per batch of
// letters: a letter is marked REPLAYED if and only if its message is in
// the outbox. It returns how many letters it replayed, also when it fails
// part way, after some batches committed. A zero Filter replays every DEAD
// letter; f.Limit, if positive, bounds how many.
//
// The letters are written in the order they died, so that the messages
// of one key, which a consumer in key order lets die one after another,
// are published again in their order; they are written due at once, in
// to.Lane.
//
// A replayed message is the dead one (key, type, headers and payload) with
// a new id, since the outbox skips the ids it has already: the original
// id (or the first one, for a replay of a replay) followed by ":replay:"
// and the letter's Seq, or a fresh id if that is longer than
// ferry.MaxIDLen; the original id is in the HeaderReplayOf header.
//
// Letters in another state are left alone: a REPLAYED letter is not
// replayed twice. To replay DISCARDED letters, say f.Status =
// StatusDiscarded.
func (t *Table) Replay(ctx context.Context, f Filter, to Replayer) (int, error) {
	if to.Store == nil {
		return 0, errors.New("deadletters: Replay needs the outbox's store in Replayer.Store")
	}
	if got := to.Store.Dialect(); got != t.d.name {
		return 0, fmt.Errorf("deadletters: the outbox's store is on %s but the dead-letter table on %s: Replay writes to the outbox in a transaction on the dead-letter table's database, so they must be in the same database", got, t.d.name)
	}
	switch f.Status {
	case "":
		f.Status = StatusDead
	case StatusDead, StatusDiscarded:
	default:
		return 0, fmt.Errorf("deadletters: Replay takes DEAD letters, or DISCARDED ones if Filter.Status says so, not %s", f.Status)
	}
	outbox := ferry.NewOutbox(to.Store)
	return t.settle(ctx, f, func(tx *sql.Tx, letters []Letter) error {
		msgs := make([]ferry.Message, len(letters))
		for i, l := range letters {
			msgs[i] = replayMessage(l, to)
		}
		if err := outbox.Write(ctx, tx, msgs...); err != nil {
			return fmt.Errorf("deadletters: replay %d dead letters into the outbox: %w", len(msgs), err)
		}
		for i, l := range letters {
			if err := t.mark(ctx, tx, l, StatusReplayed, msgs[i].ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// replayMessage returns the outbox message that replays l.
func replayMessage(l Letter, to Replayer) ferry.Message {
	root := l.ID
	if of := l.Headers[HeaderReplayOf]; of != "" {
		root = of
	}
	id := ferry.NewID()
	headers := maps.Clone(l.Headers)
	if root != "" {
		if derived := root + ":replay:" + strconv.FormatInt(l.Seq, 10); len(derived) <= ferry.MaxIDLen {
			id = derived
		}
		if headers == nil {
			headers = map[string]string{}
		}
		headers[HeaderReplayOf] = root
	}
	topic := to.Topic
	if topic == "" {
		topic = l.Topic
	}
	if topic == "" {
		topic = l.Source
	}
	return ferry.Message{ID: id, Lane: to.Lane, Topic: topic, Key: l.Key, Type: l.Type, Headers: headers, Payload: l.Payload}
}

// Discard marks the DEAD letters matching f DISCARDED, and returns how
// many it marked. A zero Filter discards every DEAD letter; f.Limit, if
// positive, bounds how many. The letters stay in the table, and can still
// be replayed with Filter.Status = StatusDiscarded.
func (t *Table) Discard(ctx context.Context, f Filter) (int, error) {
	switch f.Status {
	case "":
		f.Status = StatusDead
	case StatusDead:
	default:
		return 0, fmt.Errorf("deadletters: Discard takes DEAD letters, not %s", f.Status)
	}
	return t.settle(ctx, f, func(tx *sql.Tx, letters []Letter) error {
		for _, l := range letters {
			if err := t.mark(ctx, tx, l, StatusDiscarded, ""); err != nil {
				return err
			}
		}
		return nil
	})
}

// settle runs act on the letters matching f, a batch at a time, each batch
// in a transaction of its own in which its letters are locked. act must
// mark every letter it is given. It returns how many letters it settled.
func (t *Table) settle(ctx context.Context, f Filter, act func(tx *sql.Tx, letters []Letter) error) (int, error) {
	total := 0
	for f.Limit <= 0 || total < f.Limit {
		batch := batchSize
		if f.Limit > 0 {
			batch = min(batch, f.Limit-total)
		}
		n, last, err := t.settleBatch(ctx, f, batch, act)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
		// Only letters after the last one settled: the letters before it
		// left in the state are those another process settled meanwhile.
		f.After = last
	}
	return total, nil
}

// settleBatch settles up to limit letters matching f in one transaction,
// and returns how many, and the Seq of the last.
func (t *Table) settleBatch(ctx context.Context, f Filter, limit int, act func(tx *sql.Tx, letters []Letter) error) (int, int64, error) {
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("deadletters: begin: %w", err)
	}
	defer tx.Rollback()
	// FOR UPDATE makes a concurrent Replay or Discard of the same letters
	// wait, and then find them settled. SQLite has one writer at a time
	// (ferry's store begins transactions IMMEDIATE, so that one takes the
	// lock up front).
	letters, err := t.list(ctx, tx, f, limit, t.d.forUpdate)
	if err != nil || len(letters) == 0 {
		return 0, 0, err
	}
	if err := act(tx, letters); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("deadletters: commit: %w", err)
	}
	return len(letters), letters[len(letters)-1].Seq, nil
}

// mark moves l, which the transaction has locked in state l.Status, to
// status; replayID is the id of the outbox message that replays it.
func (t *Table) mark(ctx context.Context, tx *sql.Tx, l Letter, status Status, replayID string) error {
	var (
		stmt string
		args []any
	)
	if status == StatusReplayed {
		stmt = `UPDATE ` + t.table + ` SET status = ?, replayed_at = ` + t.d.now + `, replay_id = ? WHERE seq = ? AND status = ?`
		args = []any{string(status), replayID, l.Seq, string(l.Status)}
	} else {
		stmt = `UPDATE ` + t.table + ` SET status = ? WHERE seq = ? AND status = ?`
		args = []any{string(status), l.Seq, string(l.Status)}
	}
	res, err := tx.ExecContext(ctx, t.d.q(stmt), args...)
	if err != nil {
		return fmt.Errorf("deadletters: mark letter %d %s: %w", l.Seq, status, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("deadletters: mark letter %d %s: %w", l.Seq, status, err)
	}
	if n != 1 {
		// The lock should have prevented it: roll back rather than leave
		// a message in the outbox whose letter says otherwise.
		return fmt.Errorf("deadletters: letter %d changed state while it was being marked %s; nothing was changed, try again", l.Seq, strings.ToLower(string(status)))
	}
	return nil
}
