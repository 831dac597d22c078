// Command outbox shows ferry end to end on an embedded SQLite file: an
// order service writes orders and their OrderPlaced messages in one
// transaction, one order is rolled back, and a relay delivers the
// committed messages to an in-process handler, in order per order id.
//
//	go run ./examples/outbox
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport/local"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "ferry-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	st, err := sqlite.Open(ctx, filepath.Join(dir, "shop.db"), sqlstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, `CREATE TABLE orders (id TEXT PRIMARY KEY, amount INTEGER)`); err != nil {
		log.Fatal(err)
	}

	// The order service: the order row and its message commit together.
	outbox := ferry.NewOutbox(st)
	placeOrder := func(id string, amount int, commit bool) error {
		tx, err := st.DB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, amount) VALUES (?, ?)`, id, amount); err != nil {
			return err
		}
		err = outbox.Write(ctx, tx, ferry.Message{
			Topic:   "orders",
			Key:     id, // every message of one order in order
			Type:    "OrderPlaced",
			Payload: fmt.Appendf(nil, `{"order":%q,"amount":%d}`, id, amount),
		})
		if err != nil || !commit {
			return err
		}
		return tx.Commit()
	}
	for i, amount := range []int{120, 75, 300} {
		if err := placeOrder(fmt.Sprintf("order-%d", i+1), amount, i != 1); err != nil {
			log.Fatal(err)
		}
	}

	// The relay, delivering to a Go function by message type.
	delivered := make(chan string, 10)
	mux := local.NewMux()
	mux.HandleFunc("OrderPlaced", func(ctx context.Context, r *ferry.Record) error {
		delivered <- string(r.Payload)
		return nil
	})
	r, err := relay.New(relay.Options{
		Store:  st,
		Lanes:  []relay.Lane{{Name: ferry.DefaultLane}},
		Routes: []relay.Route{{Topic: "orders", Destination: mux}},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		log.Fatal(err)
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	stopped := make(chan error)
	go func() { stopped <- r.Run(relayCtx) }()
	// Different orders go in parallel, so they may arrive in any order;
	// order-2 was rolled back, so its message never existed.
	var got []string
	for range 2 {
		got = append(got, <-delivered)
	}
	slices.Sort(got)
	for _, p := range got {
		fmt.Println("delivered:", p)
	}
	stopRelay() // a graceful stop: outcomes recorded, leases released
	if err := <-stopped; err != nil {
		log.Fatal(err)
	}
}
