package ferry_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

func openSQLite(dir string) (*sqlite.Store, error) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "outbox.db"), sqlstore.Options{})
	if err != nil {
		return nil, err
	}
	return st, st.Migrate(ctx)
}

// ExampleOutbox_Write writes a message in the same transaction as the
// business change: it exists if and only if the transaction commits.
func ExampleOutbox_Write() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ferry-example")
	defer os.RemoveAll(dir)
	st, err := openSQLite(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	outbox := ferry.NewOutbox(st, ferry.WithLanes("online", "batch"))

	for _, commit := range []bool{true, false} {
		tx, _ := st.DB.BeginTx(ctx, nil)
		// ... the business change in tx ...
		err := outbox.Write(ctx, tx, ferry.Message{
			Lane:    "online",
			Topic:   "orders.placed",
			Key:     "order-42",
			Type:    "OrderPlaced",
			Payload: []byte(`{"order":42}`),
		})
		if err != nil {
			log.Fatal(err)
		}
		if commit {
			tx.Commit()
		} else {
			tx.Rollback()
		}
	}
	stored, _ := st.List(ctx, ferry.Filter{})
	for _, r := range stored {
		fmt.Println(r.Lane, r.Topic, r.Key, r.Status, string(r.Payload))
	}
	// Output: online orders.placed order-42 WAITING {"order":42}
}

// TestWriteRefusesBadInputWhole checks that one bad message in a Write
// writes none of them, and that the error says which one and why.
func TestWriteRefusesBadInputWhole(t *testing.T) {
	ctx := context.Background()
	st, err := openSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	outbox := ferry.NewOutbox(st, ferry.WithMaxPayload(10))
	cases := []struct {
		bad  ferry.Message
		want string
	}{
		{ferry.Message{Topic: "t", Payload: make([]byte, 11)}, `(#1 of the write, topic "t"): payload is 11 bytes, over the limit of 10`},
		{ferry.Message{}, "(#1 of the write): Topic is required"},
		{ferry.Message{Topic: "t", Key: strings.Repeat("k", ferry.MaxKeyLen+1)}, "Key must be valid UTF-8 of at most 500 bytes"},
		{ferry.Message{Topic: "t", Headers: map[string]string{"": "v"}}, "names must be non-empty"},
		{ferry.Message{Topic: "t", Lane: "\xff"}, "Lane must be valid UTF-8"},
	}
	for _, c := range cases {
		tx, err := st.DB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = outbox.Write(ctx, tx, ferry.Message{ID: "good", Topic: "t"}, c.bad)
		tx.Commit()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Write with %+v: error %v; want it to contain %q", c.bad, err, c.want)
		}
		var invalid *ferry.InvalidMessageError
		var tooLarge *ferry.PayloadTooLargeError
		if !errors.As(err, &invalid) && !errors.As(err, &tooLarge) {
			t.Errorf("Write with %+v: error %T; want *InvalidMessageError or *PayloadTooLargeError", c.bad, err)
		}
		if got, _ := st.List(ctx, ferry.Filter{}); len(got) != 0 {
			t.Fatalf("a Write with a bad message stored %d messages; want none", len(got))
		}
	}
}
