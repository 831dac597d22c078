package consume_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/consume/inbox"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
)

// The same message delivered three times through Kafka (a producer's
// retries) takes effect once: the inbox records its id in the handler's
// transaction.
func TestThreeDeliveriesOneEffect(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "payments"), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	pub, err := kafka.NewPublisher(kafka.PublisherOptions{Brokers: brokers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	for _, id := range []string{"pay-1", "pay-1", "pay-2", "pay-1"} {
		if err := pub.Publish(ctx, "payments", &transport.Message{ID: id, Key: "acct-7", Type: "Paid", Payload: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "app.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.SQLDB()
	if _, err := db.Exec(`CREATE TABLE ledger (payment TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	in, err := inbox.New(db, st.Dialect(), inbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	handled := make(chan string, 10)
	r := consume.NewRouter("ledger")
	r.Event("payments", "Paid", in.Handler("ledger", func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ledger (payment) VALUES (?)`, m.ID)
		handled <- m.ID
		return err
	}))
	sub, err := kafka.NewSubscriber(kafka.SubscriberOptions{Brokers: brokers, SessionTimeout: 3 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	c, err := consume.New(consume.Options{Name: "ledger", Subscriber: sub, Handler: r, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	waitFor(t, "both payments", func() bool {
		var n int
		db.QueryRow(`SELECT COUNT(DISTINCT payment) FROM ledger`).Scan(&n)
		return n == 2
	})
	time.Sleep(300 * time.Millisecond) // the duplicates are handled by now
	stop()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM ledger WHERE payment = 'pay-1'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("pay-1 is in the ledger %d times (%v); three deliveries must take effect once", n, err)
	}
	if len(handled) != 2 {
		t.Errorf("the handler ran %d times; the inbox skips the duplicates before it", len(handled))
	}
}
