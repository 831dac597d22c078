package deadletters

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
)

// env is one test database with an outbox store and a dead-letter table in
// it, both in tables of their own.
type env struct {
	dialect string
	store   ferry.Store
	db      *sql.DB
	dead    *Table
}

// dialects are the databases every test runs on.
var dialects = []string{"postgres", "mysql", "sqlite"}

// databases runs f on each database, in parallel.
func databases(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	for _, name := range dialects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, open(t, name))
		})
	}
}

// open opens ferry's store of dialect on a fresh outbox table, which it
// migrates, and a migrated dead-letter table in the same database; both
// are dropped when the test ends.
func open(t *testing.T, dialect string) *env {
	t.Helper()
	ctx := t.Context()
	opts := sqlstore.Options{Table: testdb.Table(t)}
	var (
		st  ferry.Store
		err error
	)
	switch dialect {
	case "postgres":
		st, err = postgres.Open(ctx, testdb.PostgresDSN(t), opts)
	case "mysql":
		st, err = mysql.Open(ctx, testdb.MySQLDSN(t), opts)
	case "sqlite":
		st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "dead.db"), opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	db := st.(interface{ SQLDB() *sql.DB }).SQLDB()
	t.Cleanup(func() {
		testdb.DropOutbox(db, opts.Table, dialect)
		st.Close()
	})
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{dialect: dialect, store: st, db: db}
	e.dead = e.newTable(t)
	return e
}

// newTable returns a migrated dead-letter table of its own.
func (e *env) newTable(t *testing.T) *Table {
	t.Helper()
	name := testdb.Table(t)
	t.Cleanup(func() { e.db.Exec("DROP TABLE IF EXISTS " + name) })
	dt, err := New(e.db, e.dialect, Options{Table: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := dt.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return dt
}

// msg returns a message of consumer read from source.
func msg(consumer, source, id string) *consume.Message {
	return &consume.Message{
		Message: transport.Message{
			ID: id, Topic: source, Key: "k-" + id, Type: "OrderPlaced",
			Headers: map[string]string{"traceparent": "00-abc-def-01", "tenant": "acme"},
			Payload: []byte(`{"id":"` + id + `"}`),
		},
		Source: source, Consumer: consumer, Partition: 0, Offset: 7, Attempt: 5,
	}
}

func deadLetter(t *testing.T, dt *Table, m *consume.Message, reason string) {
	t.Helper()
	if err := dt.DeadLetter(t.Context(), m, errors.New(reason)); err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, dt *Table, f Filter) []Letter {
	t.Helper()
	ls, err := dt.List(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// ids returns the message ids of ls, in order.
func ids(ls []Letter) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.ID
	}
	return strings.Join(s, ",")
}

// outbox returns the messages in e's outbox, in Seq order.
func (e *env) outbox(t *testing.T) []ferry.Record {
	t.Helper()
	recs, err := e.store.List(t.Context(), ferry.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestDeadLetterKeepsTheMessage(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		occurred := time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.UTC)
		payload := []byte{0, 1, 2, 0xff, 0xfe, '\n', 'x', 0}
		m := &consume.Message{
			Message: transport.Message{
				ID: "m-1", Topic: "orders.placed", Key: "order-1", Type: "OrderPlaced",
				Headers:    map[string]string{"traceparent": "00-abc-def-01", "quote": `a "b" \ c`, "unicode": "Grüße ✓"},
				Payload:    payload,
				OccurredAt: occurred,
			},
			Source: "orders", Consumer: "billing", Partition: 3, Offset: 42, Attempt: 5,
		}
		before := time.Now().Add(-time.Minute)
		deadLetter(t, e.dead, m, "charge: card declined")
		ls := list(t, e.dead, Filter{})
		if len(ls) != 1 {
			t.Fatalf("%d letters, want 1", len(ls))
		}
		l := ls[0]
		if l.ID != "m-1" || l.Topic != "orders.placed" || l.Key != "order-1" || l.Type != "OrderPlaced" ||
			l.Source != "orders" || l.Consumer != "billing" || l.Reason != "charge: card declined" || l.Attempts != 5 || l.Status != StatusDead {
			t.Errorf("letter = %+v", l)
		}
		if !maps.Equal(l.Headers, m.Headers) {
			t.Errorf("headers = %v, want %v", l.Headers, m.Headers)
		}
		if !bytes.Equal(l.Payload, payload) {
			t.Errorf("payload = %q, want %q", l.Payload, payload)
		}
		if !l.OccurredAt.Equal(occurred) {
			t.Errorf("occurred at %v, want %v", l.OccurredAt, occurred)
		}
		if l.DeadAt.Before(before) || l.DeadAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("dead at %v, want about now", l.DeadAt)
		}
		if l.Seq <= 0 || !l.ReplayedAt.IsZero() || l.ReplayID != "" {
			t.Errorf("seq %d, replayed at %v as %q", l.Seq, l.ReplayedAt, l.ReplayID)
		}
	})
}

// Fields the databases' text columns would refuse are made acceptable
// rather than failing the dead letter, which would bounce the message
// back to the broker forever; a message without headers, payload or time
// is stored too.
func TestDeadLetterOddMessages(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		bad := &consume.Message{
			Message:  transport.Message{ID: "bad\xff\x00id", Topic: "t", Key: "k\x00"},
			Source:   "t",
			Consumer: "c",
		}
		if err := e.dead.DeadLetter(t.Context(), bad, errors.New("oops \xff")); err != nil {
			t.Fatal(err)
		}
		long := msg("c", "t", strings.Repeat("x", MaxFieldLen+1))
		if err := e.dead.DeadLetter(t.Context(), long, errors.New("x")); err == nil || !strings.Contains(err.Error(), "at most 1024") {
			t.Errorf("a too long id: %v, want an error naming the limit", err)
		}
		huge := msg("c", "t", "huge")
		if err := e.dead.DeadLetter(t.Context(), huge, errors.New(strings.Repeat("é", MaxReasonLen))); err != nil {
			t.Fatal(err)
		}
		ls := list(t, e.dead, Filter{})
		if len(ls) != 2 {
			t.Fatalf("%d letters, want 2", len(ls))
		}
		if l := ls[0]; l.ID != "bad\uFFFDid" || l.Key != "k" || l.Reason != "oops \uFFFD" || l.Headers != nil || len(l.Payload) != 0 || !l.OccurredAt.IsZero() {
			t.Errorf("letter = %+v", l)
		}
		if r := ls[1].Reason; len(r) > MaxReasonLen || !strings.HasSuffix(r, "é…") {
			t.Errorf("reason of %d bytes ends %q, want at most %d ending with é…", len(r), r[len(r)-10:], MaxReasonLen)
		}
	})
}

func TestDeadLetterTwice(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		m := msg("billing", "orders", "m-1")
		deadLetter(t, e.dead, m, "first")
		m.Attempt = 3
		deadLetter(t, e.dead, m, "second")
		deadLetter(t, e.dead, msg("shipping", "orders", "m-1"), "another consumer")
		ls := list(t, e.dead, Filter{})
		if len(ls) != 2 {
			t.Fatalf("%d letters, want one per consumer: %+v", len(ls), ls)
		}
		if l := ls[0]; l.Consumer != "billing" || l.Reason != "second" || l.Attempts != 8 {
			t.Errorf("billing's letter: reason %q, attempts %d; want second, 5+3", l.Reason, l.Attempts)
		}

		// Once settled, a new death is a new letter.
		if n, err := e.dead.Discard(t.Context(), Filter{Consumer: "billing"}); err != nil || n != 1 {
			t.Fatalf("Discard = %d, %v", n, err)
		}
		deadLetter(t, e.dead, m, "third")
		if got := list(t, e.dead, Filter{Consumer: "billing"}); len(got) != 2 || got[1].Status != StatusDead || got[1].Attempts != 3 {
			t.Errorf("after discard and a new death: %+v", got)
		}

		// Messages without an id cannot be recognized: each is kept.
		for range 2 {
			deadLetter(t, e.dead, msg("anon", "orders", ""), "no id")
		}
		if got := list(t, e.dead, Filter{Consumer: "anon"}); len(got) != 2 {
			t.Errorf("%d letters of messages without an id, want 2", len(got))
		}
	})
}

// Instances of one consumer may give up on the same message at once.
func TestDeadLetterConcurrently(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				m := msg("billing", "orders", "m-1")
				m.Attempt = 1
				errs <- e.dead.DeadLetter(t.Context(), m, errors.New("boom"))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if ls := list(t, e.dead, Filter{}); len(ls) != 1 || ls[0].Attempts != 8 {
			t.Errorf("letters: %+v; want one with 8 attempts", ls)
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		deadLetter(t, e.dead, msg("billing", "orders", "b1"), "x")
		deadLetter(t, e.dead, msg("billing", "payments", "b2"), "x")
		m := msg("billing", "orders", "b3")
		m.Type = "OrderCancelled"
		deadLetter(t, e.dead, m, "x")
		deadLetter(t, e.dead, msg("shipping", "orders", "s1"), "x")
		deadLetter(t, e.dead, msg("Billing", "orders", "B1"), "case matters")
		if _, err := e.dead.Discard(t.Context(), Filter{IDs: []string{"s1"}}); err != nil {
			t.Fatal(err)
		}
		all := list(t, e.dead, Filter{})
		for _, tc := range []struct {
			f    Filter
			want string
		}{
			{Filter{}, "b1,b2,b3,s1,B1"},
			{Filter{Consumer: "billing"}, "b1,b2,b3"},
			{Filter{Source: "orders"}, "b1,b3,s1,B1"},
			{Filter{Type: "OrderCancelled"}, "b3"},
			{Filter{Status: StatusDead}, "b1,b2,b3,B1"},
			{Filter{Status: StatusDiscarded}, "s1"},
			{Filter{Status: StatusReplayed}, ""},
			{Filter{IDs: []string{"b2", "s1", "nope"}}, "b2,s1"},
			{Filter{Consumer: "billing", Source: "orders", Status: StatusDead}, "b1,b3"},
			{Filter{Limit: 2}, "b1,b2"},
			{Filter{Limit: 2, After: all[1].Seq}, "b3,s1"},
		} {
			if got := ids(list(t, e.dead, tc.f)); got != tc.want {
				t.Errorf("List(%+v) = %s, want %s", tc.f, got, tc.want)
			}
		}
		if _, err := e.dead.List(t.Context(), Filter{Status: "LOST"}); err == nil {
			t.Error("List with an unknown status: no error")
		}
	})
}

func TestReplay(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		deadLetter(t, e.dead, msg("billing", "orders", "b1"), "x")
		deadLetter(t, e.dead, msg("shipping", "orders", "s1"), "x")
		routed := msg("billing", "orders-v2", "b2")
		routed.Topic = "orders.placed" // the producer's topic, which a route renamed
		deadLetter(t, e.dead, routed, "x")
		foreign := msg("billing", "legacy", "b3")
		foreign.Topic = "" // not published by ferry
		deadLetter(t, e.dead, foreign, "x")
		letters := list(t, e.dead, Filter{Consumer: "billing"})

		n, err := e.dead.Replay(ctx, Filter{Consumer: "billing"}, Replayer{Store: e.store})
		if err != nil || n != 3 {
			t.Fatalf("Replay = %d, %v; want 3", n, err)
		}
		recs := e.outbox(t)
		if len(recs) != 3 {
			t.Fatalf("%d outbox messages, want 3", len(recs))
		}
		for i, r := range recs {
			l := letters[i]
			wantID := fmt.Sprintf("%s:replay:%d", l.ID, l.Seq)
			wantTopic := map[string]string{"b1": "orders", "b2": "orders.placed", "b3": "legacy"}[l.ID]
			if r.ID != wantID || r.Topic != wantTopic || r.Key != l.Key || r.Type != l.Type || r.Lane != ferry.DefaultLane ||
				r.Status != ferry.StatusWaiting || !bytes.Equal(r.Payload, l.Payload) {
				t.Errorf("outbox message %d = %+v; want id %s, topic %s and the letter's %+v", i, r, wantID, wantTopic, l)
			}
			want := maps.Clone(l.Headers)
			want[HeaderReplayOf] = l.ID
			if !maps.Equal(r.Headers, want) {
				t.Errorf("outbox message %s: headers %v, want %v", r.ID, r.Headers, want)
			}
		}
		for _, l := range list(t, e.dead, Filter{Consumer: "billing"}) {
			if l.Status != StatusReplayed || l.ReplayedAt.IsZero() || l.ReplayID != fmt.Sprintf("%s:replay:%d", l.ID, l.Seq) {
				t.Errorf("letter %s after replay: %s at %v as %q", l.ID, l.Status, l.ReplayedAt, l.ReplayID)
			}
		}
		if got := list(t, e.dead, Filter{Consumer: "shipping"}); got[0].Status != StatusDead {
			t.Errorf("shipping's letter is %s; the filter did not select it", got[0].Status)
		}

		// Replaying REPLAYED letters does nothing.
		if n, err := e.dead.Replay(ctx, Filter{Consumer: "billing"}, Replayer{Store: e.store}); err != nil || n != 0 {
			t.Errorf("second Replay = %d, %v; want 0", n, err)
		}
		if got := len(e.outbox(t)); got != 3 {
			t.Errorf("%d outbox messages after the second replay, want 3", got)
		}
		if _, err := e.dead.Replay(ctx, Filter{Status: StatusReplayed}, Replayer{Store: e.store}); err == nil {
			t.Error("Replay of REPLAYED letters: no error")
		}

		// A topic and lane of one's own.
		n, err = e.dead.Replay(ctx, Filter{}, Replayer{Store: e.store, Topic: "shipping.retry", Lane: "repair"})
		if err != nil || n != 1 {
			t.Fatalf("Replay to a topic = %d, %v", n, err)
		}
		if r := e.outbox(t)[3]; r.Topic != "shipping.retry" || r.Lane != "repair" || r.Headers[HeaderReplayOf] != "s1" {
			t.Errorf("replayed to %s in lane %s, replay-of %q", r.Topic, r.Lane, r.Headers[HeaderReplayOf])
		}
	})
}

// A replayed message that dies again keeps pointing at the first message,
// and messages of one key go back in the order they died.
func TestReplayAgain(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		for i := range 3 {
			m := msg("billing", "orders", fmt.Sprint("m", i))
			m.Key = "order-1"
			deadLetter(t, e.dead, m, "x")
		}
		if _, err := e.dead.Replay(ctx, Filter{}, Replayer{Store: e.store}); err != nil {
			t.Fatal(err)
		}
		recs := e.outbox(t)
		for i, r := range recs {
			if want := fmt.Sprint("m", i); r.Headers[HeaderReplayOf] != want {
				t.Errorf("outbox message %d replays %s, want %s: key order lost", i, r.Headers[HeaderReplayOf], want)
			}
		}
		// The replay dies too, as the consumer receives it.
		again := &consume.Message{Message: *transport.FromRecord(&recs[0]), Source: "orders", Consumer: "billing", Attempt: 1}
		deadLetter(t, e.dead, again, "still broken")
		if _, err := e.dead.Replay(ctx, Filter{}, Replayer{Store: e.store}); err != nil {
			t.Fatal(err)
		}
		recs = e.outbox(t)
		last := list(t, e.dead, Filter{})[3]
		if r := recs[3]; r.ID != fmt.Sprintf("m0:replay:%d", last.Seq) || r.Headers[HeaderReplayOf] != "m0" {
			t.Errorf("the replay of a replay is %s, replay-of %s; want m0:replay:%d, m0", r.ID, r.Headers[HeaderReplayOf], last.Seq)
		}
	})
}

// failingStore writes to the outbox and then fails, as a crash after the
// write would.
type failingStore struct{ ferry.Store }

var errInjected = errors.New("injected failure")

func (s failingStore) Write(ctx context.Context, tx *sql.Tx, msgs []ferry.Message) error {
	if err := s.Store.Write(ctx, tx, msgs); err != nil {
		return err
	}
	return errInjected
}

func TestReplayIsAtomic(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		deadLetter(t, e.dead, msg("billing", "orders", "b1"), "x")
		deadLetter(t, e.dead, msg("billing", "orders", "b2"), "x")
		n, err := e.dead.Replay(ctx, Filter{}, Replayer{Store: failingStore{e.store}})
		if !errors.Is(err, errInjected) || n != 0 {
			t.Fatalf("Replay = %d, %v; want 0 and the injected error", n, err)
		}
		if got := len(e.outbox(t)); got != 0 {
			t.Errorf("%d outbox messages after a failed replay, want 0", got)
		}
		if got := ids(list(t, e.dead, Filter{Status: StatusDead})); got != "b1,b2" {
			t.Errorf("DEAD letters after a failed replay: %s, want b1,b2", got)
		}

		// A message the outbox refuses fails its batch, and nothing else.
		bad := msg("billing", "orders", "b3")
		bad.Key = strings.Repeat("k", ferry.MaxKeyLen+1)
		deadLetter(t, e.dead, bad, "x")
		var invalid *ferry.InvalidMessageError
		if _, err := e.dead.Replay(ctx, Filter{}, Replayer{Store: e.store}); !errors.As(err, &invalid) {
			t.Errorf("Replay of a key too long for the outbox: %v, want an InvalidMessageError", err)
		}
		if got := len(e.outbox(t)); got != 0 {
			t.Errorf("%d outbox messages, want 0", got)
		}
		if n, err := e.dead.Replay(ctx, Filter{IDs: []string{"b1", "b2"}}, Replayer{Store: e.store}); err != nil || n != 2 {
			t.Errorf("Replay of the good ones = %d, %v", n, err)
		}
	})
}

// Two replays of the same letters at once replay each letter once.
func TestReplayConcurrently(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		for i := range 20 {
			deadLetter(t, e.dead, msg("billing", "orders", fmt.Sprint("m", i)), "x")
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			total int
		)
		for range 3 {
			wg.Go(func() {
				n, err := e.dead.Replay(t.Context(), Filter{}, Replayer{Store: e.store})
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if got := len(e.outbox(t)); total != 20 || got != 20 {
			t.Errorf("replays counted %d, outbox has %d; want 20 and 20", total, got)
		}
	})
}

func TestReplayBatchesAndLimit(t *testing.T) {
	t.Parallel()
	e := open(t, "sqlite")
	for i := range batchSize + 10 {
		deadLetter(t, e.dead, msg("billing", "orders", fmt.Sprintf("m%04d", i)), "x")
	}
	n, err := e.dead.Replay(t.Context(), Filter{Limit: 5}, Replayer{Store: e.store})
	if err != nil || n != 5 {
		t.Fatalf("Replay with Limit 5 = %d, %v", n, err)
	}
	n, err = e.dead.Replay(t.Context(), Filter{}, Replayer{Store: e.store})
	if err != nil || n != batchSize+5 {
		t.Fatalf("Replay = %d, %v; want %d", n, err, batchSize+5)
	}
	recs := e.outbox(t)
	if len(recs) != batchSize+10 {
		t.Fatalf("%d outbox messages", len(recs))
	}
	for i, r := range recs {
		if want := fmt.Sprintf("m%04d", i); r.Headers[HeaderReplayOf] != want {
			t.Fatalf("outbox message %d replays %s, want %s", i, r.Headers[HeaderReplayOf], want)
		}
	}
}

func TestDiscard(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		deadLetter(t, e.dead, msg("billing", "orders", "b1"), "x")
		deadLetter(t, e.dead, msg("billing", "orders", "b2"), "x")
		deadLetter(t, e.dead, msg("shipping", "orders", "s1"), "x")
		if n, err := e.dead.Discard(ctx, Filter{Consumer: "billing", Limit: 1}); err != nil || n != 1 {
			t.Fatalf("Discard = %d, %v; want 1", n, err)
		}
		if got := ids(list(t, e.dead, Filter{Status: StatusDiscarded})); got != "b1" {
			t.Errorf("DISCARDED: %s, want b1", got)
		}
		if n, err := e.dead.Discard(ctx, Filter{IDs: []string{"b1"}}); err != nil || n != 0 {
			t.Errorf("Discard of a DISCARDED letter = %d, %v; want 0", n, err)
		}
		if _, err := e.dead.Discard(ctx, Filter{Status: StatusReplayed}); err == nil {
			t.Error("Discard of REPLAYED letters: no error")
		}
		// Replay leaves DISCARDED letters alone unless asked for them.
		if n, err := e.dead.Replay(ctx, Filter{Consumer: "billing"}, Replayer{Store: e.store}); err != nil || n != 1 {
			t.Fatalf("Replay = %d, %v; want 1 (b2)", n, err)
		}
		if n, err := e.dead.Replay(ctx, Filter{Status: StatusDiscarded}, Replayer{Store: e.store}); err != nil || n != 1 {
			t.Fatalf("Replay of DISCARDED = %d, %v; want 1 (b1)", n, err)
		}
		if got := ids(list(t, e.dead, Filter{Status: StatusReplayed})); got != "b1,b2" {
			t.Errorf("REPLAYED: %s, want b1,b2", got)
		}
		if got := ids(list(t, e.dead, Filter{Status: StatusDead})); got != "s1" {
			t.Errorf("DEAD: %s, want s1", got)
		}
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		// Again, and concurrently on a new table.
		if err := e.dead.Migrate(ctx); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		name := testdb.Table(t)
		t.Cleanup(func() { e.db.Exec("DROP TABLE IF EXISTS " + name) })
		dt, err := New(e.db, e.dialect, Options{Table: name})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if err := dt.Migrate(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()

		// A table of that name made for something else.
		other := testdb.Table(t)
		t.Cleanup(func() { e.db.Exec("DROP TABLE IF EXISTS " + other) })
		if _, err := e.db.ExecContext(ctx, "CREATE TABLE "+other+" (id INTEGER)"); err != nil {
			t.Fatal(err)
		}
		dt, err = New(e.db, e.dialect, Options{Table: other})
		if err != nil {
			t.Fatal(err)
		}
		if err := dt.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "another table") {
			t.Errorf("Migrate over a foreign table: %v", err)
		}
	})
}

// MariaDB opened with a plain DSN, as a consumer service may: no
// parseTime, the server's sql_mode and time zone.
func TestMySQLPlainDSN(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("mysql", testdb.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{dialect: "mysql", db: db}
	dt := e.newTable(t)
	m := msg("billing", "orders", "m-1")
	m.OccurredAt = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	deadLetter(t, dt, m, "x")
	ls := list(t, dt, Filter{})
	if len(ls) != 1 || !ls[0].OccurredAt.Equal(m.OccurredAt) || time.Since(ls[0].DeadAt).Abs() > time.Minute {
		t.Errorf("letters %+v", ls)
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		db      *sql.DB
		dialect string
		opts    Options
		want    string
	}{
		{nil, "sqlite", Options{}, "nil *sql.DB"},
		{db, "oracle", Options{}, `unknown dialect "oracle"`},
		{db, "sqlite", Options{Table: "dead letters"}, "Options.Table"},
	} {
		if _, err := New(tc.db, tc.dialect, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, %+v) = %v, want an error with %q", tc.dialect, tc.opts, err, tc.want)
		}
	}
	dt, err := New(db, "sqlite", Options{})
	if err != nil || dt.Name() != DefaultTable {
		t.Fatalf("New = %v, %v", dt, err)
	}
	if _, err := dt.Replay(t.Context(), Filter{}, Replayer{}); err == nil {
		t.Error("Replay without a store: no error")
	}
	_, err = dt.Replay(t.Context(), Filter{}, Replayer{Store: postgresStore{}})
	if err == nil || !strings.Contains(err.Error(), "same database") {
		t.Errorf("Replay into a PostgreSQL outbox from SQLite: %v", err)
	}
}

// postgresStore is a store of another database than the test's.
type postgresStore struct{ ferry.Store }

func (postgresStore) Dialect() string { return "postgres" }
