package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

func main() {
	ctx := context.Background()
	os.Remove("/tmp/x.db")
	s, err := sqlite.Open(ctx, "/tmp/x.db", sqlstore.Options{})
	check(err)
	check(s.Migrate(ctx))
	check(s.Migrate(ctx))
	ob := ferry.NewOutbox(s)
	tx, _ := s.DB.BeginTx(ctx, nil)
	check(ob.Write(ctx, tx, ferry.Message{Topic: "t", Key: "k", Payload: []byte("a"), Headers: map[string]string{"h": "v"}}, ferry.Message{ID: "x", Topic: "t", DeliverAt: time.Now().Add(time.Hour)}))
	check(ob.Write(ctx, tx, ferry.Message{ID: "x", Topic: "t"}))
	check(tx.Commit())
	rs, err := s.Fetch(ctx, ferry.FetchQuery{Lane: "default", Limit: 10})
	check(err)
	for _, r := range rs {
		fmt.Printf("%+v\n", r)
	}
	rs, err = s.Fetch(ctx, ferry.FetchQuery{Lane: "default", Limit: 10, DueOnly: true})
	check(err)
	fmt.Println("due", len(rs))
	l, err := s.Lease(ctx, "n1", 5*time.Second)
	check(err)
	fmt.Println(l)
	l, err = s.Lease(ctx, "n2", 5*time.Second)
	check(err)
	fmt.Println(l)
	check(s.Complete(ctx, []ferry.Outcome{{Seq: 1, Status: ferry.StatusDone}, {Seq: 2, Status: ferry.StatusFailed, Error: "boom"}}))
	st, err := s.Stats(ctx)
	check(err)
	fmt.Printf("%+v\n", st)
	n, err := s.Cleanup(ctx, time.Now().Add(time.Second), 10)
	fmt.Println("cleanup", n, err)
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
