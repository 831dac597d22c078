package ferry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Outbox writes messages in the caller's transaction.
//
//	tx, _ := db.BeginTx(ctx, nil)
//	// ... the business change ...
//	err := outbox.Write(ctx, tx, ferry.Message{Topic: "orders", Key: orderID, Payload: body})
//	// ... tx.Commit(): the message exists if and only if this commits
//
// An Outbox is safe for concurrent use.
type Outbox struct {
	store      Store
	maxPayload int
	lanes      []string // nil: any lane
}

// OutboxOption configures an Outbox.
type OutboxOption func(*Outbox)

// WithMaxPayload sets the largest payload Write accepts, in bytes
// (DefaultMaxPayload if not set). Brokers have limits of their own; keep
// this at or below the smallest of them.
func WithMaxPayload(n int) OutboxOption { return func(o *Outbox) { o.maxPayload = n } }

// WithLanes makes Write refuse messages for lanes other than these, so a
// typo in a lane name fails the write instead of leaving messages that no
// relay serves.
func WithLanes(lanes ...string) OutboxOption {
	return func(o *Outbox) { o.lanes = slices.Clone(lanes) }
}

// NewOutbox returns an Outbox that writes to s.
func NewOutbox(s Store, opts ...OutboxOption) *Outbox {
	o := &Outbox{store: s, maxPayload: DefaultMaxPayload}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Write validates msgs and inserts them in tx. Invalid input writes
// nothing and returns an *InvalidMessageError, *PayloadTooLargeError or
// *UnknownLaneError. Many messages in one call take the store's bulk path
// (one multi-row statement per chunk), which is how batch producers should
// write. A message whose ID is already stored is skipped, so producers can
// retry with the same ids.
func (o *Outbox) Write(ctx context.Context, tx *sql.Tx, msgs ...Message) error {
	if tx == nil {
		return fmt.Errorf("ferry: Outbox.Write needs the caller's transaction, got nil")
	}
	prepared, err := o.prepare(msgs)
	if err != nil || len(prepared) == 0 {
		return err
	}
	return o.store.Write(ctx, tx, prepared)
}

// PgxWriter is implemented by stores that can write with a pgx
// transaction (store/postgres).
type PgxWriter interface {
	WritePgx(ctx context.Context, tx pgx.Tx, msgs []Message) error
}

// WritePgx is Write for a pgx transaction. It needs a PostgreSQL store.
// Large writes use COPY.
func (o *Outbox) WritePgx(ctx context.Context, tx pgx.Tx, msgs ...Message) error {
	w, ok := o.store.(PgxWriter)
	if !ok {
		return fmt.Errorf("ferry: a pgx.Tx needs a PostgreSQL store, but this outbox's store is %s; use Write with a *sql.Tx", o.store.Dialect())
	}
	if tx == nil {
		return fmt.Errorf("ferry: Outbox.WritePgx needs the caller's transaction, got nil")
	}
	prepared, err := o.prepare(msgs)
	if err != nil || len(prepared) == 0 {
		return err
	}
	return w.WritePgx(ctx, tx, prepared)
}

// prepare copies msgs, fills in defaults and validates them all before
// anything is written.
func (o *Outbox) prepare(msgs []Message) ([]Message, error) {
	out := make([]Message, len(msgs))
	for i := range msgs {
		m := msgs[i]
		if err := m.normalize(o.maxPayload); err != nil {
			var invalid *InvalidMessageError
			var tooLarge *PayloadTooLargeError
			switch {
			case errors.As(err, &invalid):
				invalid.Index = i
			case errors.As(err, &tooLarge):
				tooLarge.Index = i
			}
			return nil, err
		}
		if o.lanes != nil && !slices.Contains(o.lanes, m.Lane) {
			return nil, &UnknownLaneError{ID: m.ID, Lane: m.Lane, Known: o.lanes}
		}
		out[i] = m
	}
	return out, nil
}
