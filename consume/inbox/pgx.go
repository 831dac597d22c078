package inbox

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/consume"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PgxTxHandler is a TxHandler for programs that use pgx directly: it
// receives a pgx transaction. It must not commit or roll back tx itself.
type PgxTxHandler func(ctx context.Context, tx pgx.Tx, m *consume.Message) error

// PgxHandler is Handler with transactions begun on pool instead of the
// inbox's *sql.DB, for handlers written with pgx. pool must reach the
// database of the inbox's table, which must be PostgreSQL; one way to get
// both is:
//
//	ib, err := inbox.New(stdlib.OpenDBFromPool(pool), "postgres", opts)
//	h := ib.PgxHandler(pool, "billing", handle)
//
// PgxHandler panics if the inbox is not on PostgreSQL, if pool or h is
// nil, or if consumer is not a valid consumer name (see Handler).
func (i *Inbox) PgxHandler(pool *pgxpool.Pool, consumer string, h PgxTxHandler) consume.Handler {
	if i.d.name != "postgres" {
		panic(fmt.Sprintf("inbox: PgxHandler needs an inbox on PostgreSQL, but this one is on %s; use Handler", i.d.name))
	}
	if pool == nil || h == nil {
		panic("inbox: PgxHandler: nil pool or PgxTxHandler")
	}
	checkConsumer("PgxHandler", consumer)
	return consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		if err := checkID(consumer, m); err != nil {
			return err
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("inbox: consumer %q, message %q: begin: %w", consumer, m.ID, err)
		}
		// A no-op after Commit. If ctx has ended, pgx closes the
		// connection instead of returning it to the pool mid-transaction.
		defer tx.Rollback(ctx)
		tag, err := tx.Exec(ctx, i.d.insert, consumer, m.ID)
		if err != nil {
			return fmt.Errorf("inbox: consumer %q, message %q: record in %s: %w", consumer, m.ID, i.table, err)
		}
		if tag.RowsAffected() == 0 {
			i.skipped(ctx, consumer, m)
			return nil
		}
		if err := h(ctx, tx, m); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("inbox: consumer %q, message %q: commit: %w", consumer, m.ID, err)
		}
		return nil
	})
}
