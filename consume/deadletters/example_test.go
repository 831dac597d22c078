package deadletters_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/consume/deadletters"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
)

// The billing consumer gives up on an order; once the bug is fixed, its
// dead letter goes back through the outbox, in the same database.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "deadletters-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	st, err := sqlite.Open(ctx, filepath.Join(dir, "billing.db"), sqlstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil { // the outbox
		log.Fatal(err)
	}
	dead, err := deadletters.New(st.SQLDB(), st.Dialect(), deadletters.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := dead.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	// What the consumer does when it gives up (consume.Options.DeadLetter).
	m := &consume.Message{
		Message: transport.Message{
			ID: "0192f3a4-7c1e", Topic: "orders", Key: "order-42", Type: "OrderPlaced",
			Payload: []byte(`{"order":42}`),
		},
		Source: "orders", Consumer: "billing", Attempt: 5,
	}
	if err := dead.DeadLetter(ctx, m, errors.New("charge: no such customer")); err != nil {
		log.Fatal(err)
	}

	letters, err := dead.List(ctx, deadletters.Filter{Consumer: "billing"})
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range letters {
		fmt.Printf("%s %s %s after %d attempts: %s\n", l.Status, l.Consumer, l.ID, l.Attempts, l.Reason)
	}

	n, err := dead.Replay(ctx, deadletters.Filter{Consumer: "billing"}, deadletters.Replayer{Store: st})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replayed", n)
	recs, err := st.List(ctx, ferry.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Printf("outbox: %s to %s, %s=%s, %s\n", r.ID, r.Topic, deadletters.HeaderReplayOf, r.Headers[deadletters.HeaderReplayOf], r.Payload)
	}
	// Output:
	// DEAD billing 0192f3a4-7c1e after 5 attempts: charge: no such customer
	// replayed 1
	// outbox: 0192f3a4-7c1e:replay:1 to orders, replay-of=0192f3a4-7c1e, {"order":42}
}
