package inbox

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

func TestPgxHandler(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), testdb.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := env{dialect: "postgres", db: stdlib.OpenDBFromPool(pool)}
	t.Cleanup(func() { e.db.Close() })
	i := e.newInbox(t, Options{})
	fx := e.newEffects(t)
	errDown := errors.New("payment service down")
	var fail atomic.Bool
	fail.Store(true)
	h := i.PgxHandler(pool, "billing", func(ctx context.Context, tx pgx.Tx, m *consume.Message) error {
		fx.calls.Add(1)
		if _, err := tx.Exec(ctx, "INSERT INTO "+fx.table+" (consumer, message_id) VALUES ($1, $2)", "billing", m.ID); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // let concurrent duplicates wait
		if fail.Load() {
			return errDown
		}
		return nil
	})

	if err := h.Handle(t.Context(), msg("m-1")); !errors.Is(err, errDown) {
		t.Fatalf("failing handler: got %v, want its error", err)
	}
	if got := fx.count(t, "billing"); got != 0 || seen(t, i, "billing", "m-1") {
		t.Fatalf("the failed attempt left %d effects or the record", got)
	}
	fail.Store(false)
	for _, err := range concurrently(t, h, "m-1", 8) {
		if err != nil {
			t.Errorf("delivery: %v", err)
		}
	}
	if err := h.Handle(t.Context(), msg("m-1")); err != nil {
		t.Fatal(err)
	}
	if got := fx.count(t, "billing"); got != 1 {
		t.Errorf("%d effects, want 1", got)
	}
	if got := fx.calls.Load(); got != 2 {
		t.Errorf("handler ran %d times, want 2 (the failure and one success)", got)
	}
	if err := h.Handle(t.Context(), msg("")); !consume.IsPermanent(err) {
		t.Errorf("empty id: got %v, want a permanent error", err)
	}
}

func TestPgxHandlerNeedsPostgres(t *testing.T) {
	t.Parallel()
	e := open(t, "sqlite", "")
	i, err := New(e.db, "sqlite", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("PgxHandler on a SQLite inbox did not panic")
		}
	}()
	i.PgxHandler(&pgxpool.Pool{}, "billing", func(context.Context, pgx.Tx, *consume.Message) error { return nil })
}
