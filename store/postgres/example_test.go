package postgres_test

import (
	"context"
	"log"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// An application that uses pgx directly writes its messages in the same
// pgx transaction as its business change, through Outbox.WritePgx: the
// event exists if and only if the order update commits.
func ExampleStore_WritePgx() {
	ctx := context.Background()
	dsn := "postgres://app@localhost:5432/shop"

	store, err := postgres.Open(ctx, dsn, sqlstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	outbox := ferry.NewOutbox(store)

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	orderID := "order-1042"
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'placed' WHERE id = $1`, orderID); err != nil {
			return err
		}
		return outbox.WritePgx(ctx, tx, ferry.Message{
			Topic:   "orders",
			Key:     orderID, // the relay publishes one order's events in order
			Type:    "OrderPlaced",
			Payload: []byte(`{"order_id":"order-1042","total":"59.90"}`),
		})
	})
	if err != nil {
		log.Fatal(err)
	}
}
