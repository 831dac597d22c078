package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/consume/deadletters"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/transport"
)

// seedDead creates the dead-letter table named table in st's database and
// stores these letters in it:
//
//	billing:  b1 (orders, OrderPlaced), b2 (payments, PaymentFailed)
//	shipping: s1 (orders, OrderPlaced)
func seedDead(t *testing.T, st *sqlite.Store, table string) *deadletters.Table {
	t.Helper()
	ctx := context.Background()
	dt, err := deadletters.New(st.DB, st.Dialect(), deadletters.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if err := dt.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ consumer, source, id, typ, reason string }{
		{"billing", "orders", "b1", "OrderPlaced", "charge: card declined\nafter 3 tries"},
		{"billing", "payments", "b2", "PaymentFailed", "no such customer"},
		{"shipping", "orders", "s1", "OrderPlaced", "no address"},
	} {
		cm := &consume.Message{
			Message: transport.Message{ID: m.id, Topic: m.source, Key: "key-" + m.id, Type: m.typ,
				Headers: map[string]string{"tenant": "acme"}, Payload: []byte(`{"id":"` + m.id + `"}`)},
			Source: m.source, Consumer: m.consumer, Attempt: 5,
		}
		if err := dt.DeadLetter(ctx, cm, errors.New(m.reason)); err != nil {
			t.Fatal(err)
		}
	}
	return dt
}

func TestDLQUsage(t *testing.T) {
	ferryRun(t, "dlq").want(t, 2, "err:Usage: ferry dlq list|replay|discard", "err:replay")
	ferryRun(t, "dlq", "-h").want(t, 0, "out:Usage: ferry dlq list|replay|discard")
	ferryRun(t, "dlq", "lst").want(t, 2, `err:ferry dlq: unknown subcommand "lst"`, `err:did you mean "list"?`)
	ferryRun(t, "dlq", "replay", "-h").want(t, 0, "err:Usage: ferry dlq replay", "err:-outbox-table")
	ferryRun(t, "dlq", "list", "--status", "LOST", "--db", "sqlite:x.db").want(t, 2, `err:ferry dlq list: --status "LOST"`, "err:Run 'ferry dlq list -h'")
	ferryRun(t, "dlq", "list", "--table", "no-dashes", "--db", "sqlite:x.db").want(t, 2, "err:--table: table name")
	ferryRun(t, "dlq", "list").want(t, 2, "err:which database?")
}

func TestDLQList(t *testing.T) {
	url, path := newDB(t)
	st := openStore(t, path)

	// Before any consumer created the table.
	ferryRun(t, "dlq", "list", "--db", url).want(t, 1, "err:the dead-letter table ferry_dead_letters does not exist", "err:is --table right?")

	seedDead(t, st, deadletters.DefaultTable)
	r := ferryRun(t, "dlq", "list", "--db", url)
	r.want(t, 0, "out:CONSUMER", "out:SOURCE", "out:ATTEMPTS", "out:REASON", "out:charge: card declined after 3 tries", "out:PaymentFailed", "out:key-s1")
	if lines := strings.Count(r.stdout, "\n"); lines != 4 {
		t.Errorf("%d lines, want a header and 3 letters:\n%s", lines, r.stdout)
	}
	r = ferryRun(t, "dlq", "list", "--db", url, "--consumer", "billing", "--source", "orders")
	r.want(t, 0, "out:b1")
	if strings.Contains(r.stdout, "b2") || strings.Contains(r.stdout, "s1") {
		t.Errorf("--consumer billing --source orders lists others:\n%s", r.stdout)
	}
	ferryRun(t, "dlq", "list", "--db", url, "--type", "PaymentFailed").want(t, 0, "out:b2")
	ferryRun(t, "dlq", "list", "--db", url, "--status", "replayed").want(t, 0, "out:no dead letters match")
	ferryRun(t, "dlq", "list", "--db", url, "--limit", "2").want(t, 0, "err:showing the first 2; see the next ones with --after 2")
	ferryRun(t, "dlq", "list", "--db", url, "--after", "2").want(t, 0, "out:s1")

	r = ferryRun(t, "dlq", "list", "--db", url, "--json", "--id", "b1")
	r.want(t, 0)
	var got []letterReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(got) != 1 || got[0].ID != "b1" || got[0].Consumer != "billing" || got[0].Headers["tenant"] != "acme" ||
		got[0].Attempts != 5 || got[0].Status != deadletters.StatusDead || got[0].PayloadSize != len(`{"id":"b1"}`) {
		t.Errorf("JSON: %+v", got)
	}
}

func TestDLQReplay(t *testing.T) {
	url, path := newDB(t)
	st := openStore(t, path)
	seedDead(t, st, deadletters.DefaultTable)

	ferryRun(t, "dlq", "replay", "--db", url).want(t, 2,
		"err:which dead letters? choose them with --id, --consumer, --source or --type, or give --all to replay every one")
	ferryRun(t, "dlq", "replay", "--db", url, "--all", "--consumer", "billing").want(t, 2, "err:leave it out")
	if got := statuses(t, st); len(got) != 0 {
		t.Fatalf("a refused replay wrote %v", got)
	}

	ferryRun(t, "dlq", "replay", "--db", url, "--consumer", "billing").want(t, 0,
		"out:replayed 2 dead letters of consumer billing into the outbox (lane default); the relay publishes them")
	recs, err := st.List(context.Background(), ferry.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ID != "b1:replay:1" || recs[0].Topic != "orders" || recs[0].Key != "key-b1" ||
		recs[0].Headers[deadletters.HeaderReplayOf] != "b1" || recs[1].ID != "b2:replay:2" || recs[1].Status != ferry.StatusWaiting {
		t.Errorf("outbox after replay: %+v", recs)
	}
	ferryRun(t, "dlq", "list", "--db", url, "--status", "REPLAYED").want(t, 0, "out:b1", "out:b2")

	// Again: nothing left to replay, and the command says why.
	ferryRun(t, "dlq", "replay", "--db", url, "--consumer", "billing").want(t, 1,
		"err:no DEAD letter matches --consumer billing, so nothing changed",
		"err:see the DEAD letters with: ferry dlq list --db "+url+" --status DEAD")
	ferryRun(t, "dlq", "replay", "--db", url, "--id", "b1,nope").want(t, 1,
		"err:the letter 1 (consumer billing, id b1) is REPLAYED as b1:replay:1", "err:no dead letter has id nope")
	if got := len(statuses(t, st)); got != 2 {
		t.Errorf("%d outbox messages after the repeated replays, want 2", got)
	}

	ferryRun(t, "dlq", "replay", "--db", url, "--all", "--topic", "shipping.retry", "--lane", "repair").want(t, 0,
		"out:replayed 1 dead letter into the outbox (lane repair, topic shipping.retry)")
	ferryRun(t, "dlq", "replay", "--db", url, "--all").want(t, 1, "err:there are no DEAD letters")
}

// Replay needs the outbox in the dead letters' database.
func TestDLQReplayWithoutOutbox(t *testing.T) {
	url, path := newDB(t)
	st := openStore(t, path)
	seedDead(t, st, "dead")
	ferryRun(t, "dlq", "replay", "--db", url, "--table", "dead", "--outbox-table", "other_outbox", "--all").want(t, 1,
		"err:the outbox table other_outbox does not exist", "err:ferry migrate --db "+url+" --table other_outbox")
	ferryRun(t, "dlq", "list", "--db", url, "--table", "dead").want(t, 0, "out:b1", "out:b2", "out:s1")
}

func TestDLQDiscard(t *testing.T) {
	url, path := newDB(t)
	st := openStore(t, path)
	seedDead(t, st, "dead")

	ferryRun(t, "dlq", "discard", "--db", url, "--table", "dead").want(t, 2, "err:or give --all to discard every one")
	ferryRun(t, "dlq", "discard", "--db", url, "--table", "dead", "--source", "orders", "--type", "OrderPlaced").want(t, 0,
		"out:discarded 2 dead letters from source orders of type OrderPlaced; they stay in the table as DISCARDED")
	ferryRun(t, "dlq", "list", "--db", url, "--table", "dead").want(t, 0, "out:b2")
	ferryRun(t, "dlq", "list", "--db", url, "--table", "dead", "--status", "discarded").want(t, 0, "out:b1", "out:s1")
	ferryRun(t, "dlq", "discard", "--db", url, "--table", "dead", "--id", "s1").want(t, 1,
		"err:the letter 3 (consumer shipping, id s1) is DISCARDED",
		"err:see the DEAD letters with: ferry dlq list --db "+url+" --table dead --status DEAD")

	// A discard is taken back by replaying the DISCARDED letter.
	ferryRun(t, "dlq", "replay", "--db", url, "--table", "dead", "--id", "s1", "--status", "DISCARDED").want(t, 0,
		"out:replayed 1 dead letter with id s1 into the outbox")
	if got := statuses(t, st); len(got) != 1 || got["s1:replay:3"] != ferry.StatusWaiting {
		t.Errorf("outbox: %v, want s1:replay:3 WAITING", got)
	}
	ferryRun(t, "dlq", "discard", "--db", url, "--table", "dead", "--all").want(t, 0, "out:discarded 1 dead letter; it stays in the table as DISCARDED")
}
