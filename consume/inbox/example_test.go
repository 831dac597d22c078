package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/consume/inbox"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
)

// A billing consumer charges each order once, although the broker
// delivers the OrderPlaced event twice.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "inbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// ferry's SQLite store opens the file with the busy timeout the inbox
	// needs when handlers run concurrently.
	st, err := sqlite.Open(ctx, filepath.Join(dir, "billing.db"), sqlstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	db := st.SQLDB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE charges (order_id TEXT NOT NULL)`); err != nil {
		log.Fatal(err)
	}

	ib, err := inbox.New(db, st.Dialect(), inbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := ib.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	charge := ib.Handler("billing", func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
		fmt.Printf("charging %s\n", m.Payload)
		_, err := tx.ExecContext(ctx, `INSERT INTO charges (order_id) VALUES (?)`, string(m.Payload))
		return err
	})

	m := &consume.Message{Message: transport.Message{
		ID:      "0192f3a4-7c1e-7b3a-9d2e-5f6a7b8c9d0e",
		Topic:   "orders",
		Type:    "OrderPlaced",
		Payload: []byte("order-42"),
	}}
	for delivery := 1; delivery <= 2; delivery++ {
		err := charge.Handle(ctx, m)
		var charges int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM charges`).Scan(&charges); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("delivery %d: error %v, charges %d\n", delivery, err, charges)
	}
	seen, err := ib.Seen(ctx, "billing", m.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("recorded as processed:", seen)
	// Output:
	// charging order-42
	// delivery 1: error <nil>, charges 1
	// delivery 2: error <nil>, charges 1
	// recorded as processed: true
}
