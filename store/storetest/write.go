package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
)

var migrateCases = []testCase{
	{"Idempotent", testMigrateIdempotent},
	{"Concurrent", testMigrateConcurrent},
}

// testMigrateIdempotent runs Migrate again on a store in use: it succeeds,
// and the messages and leases are still there.
func testMigrateIdempotent(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("m1", "", "k"))
	l, err := e.s.Lease(t.Context(), "node-a", time.Minute)
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	for i := range 2 {
		if err := e.s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate run again (%d): want nil, got %v", i+1, err)
		}
	}
	after := e.record(t, "m1")
	if after.Seq != recs[0].Seq || after.Status != ferry.StatusWaiting || string(after.Payload) != string(recs[0].Payload) {
		t.Errorf("after Migrate again: want message m1 unchanged (Seq %d, WAITING), got Seq %d, %s", recs[0].Seq, after.Seq, after.Status)
	}
	l2, err := e.s.Lease(t.Context(), "node-b", time.Minute)
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	if len(l.Shards) != ferry.Shards || len(l2.Shards) != 0 {
		t.Errorf("after Migrate again: want node-a's %d shards kept (node-b gets none), got node-a %d before, node-b %v after",
			ferry.Shards, len(l.Shards), shortList(l2.Shards))
	}
	e.write(t, msg("m2", "", "k"))
	wantIDs(t, "Fetch after Migrate again", e.fetchLane(t, ferry.DefaultLane), "m1", "m2")
}

// testMigrateConcurrent creates the schema from two store instances at
// once, then runs Migrate from several goroutines on both.
func testMigrateConcurrent(t *testing.T, open factory) {
	table := testdb.Table(t)
	envs := make([]*env, 2)
	var wg sync.WaitGroup
	for i := range envs {
		wg.Go(func() { envs[i] = openEnv(t, open, table) }) // each call migrates the new table
	}
	wg.Wait()
	if t.Failed() || envs[0] == nil || envs[1] == nil {
		t.Fatalf("two store instances migrating a new table at once: want both to succeed; see the errors above")
	}
	errs := make(chan error, 2*len(envs))
	for _, e := range envs {
		for range 2 {
			wg.Go(func() { errs <- e.s.Migrate(t.Context()) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Migrate from several goroutines and instances at once: want nil, got %v", err)
		}
	}
	l, err := envs[0].s.Lease(t.Context(), "node-a", time.Minute)
	if err != nil {
		t.Fatalf("Lease after concurrent migrations: %v", err)
	}
	if !slices.Equal(l.Shards, allShards()) {
		t.Errorf("after concurrent migrations, a single node's Lease: want every shard 0..%d once, got %s", ferry.Shards-1, shortList(l.Shards))
	}
	envs[0].write(t, msg("m1", "", ""))
	wantIDs(t, "Fetch from the second instance", envs[1].fetchLane(t, ferry.DefaultLane), "m1")
}

var writeCases = []testCase{
	{"Transaction", testWriteTransaction},
	{"RoundTrip", testWriteRoundTrip},
	{"Defaults", testWriteDefaults},
	{"Shard", testWriteShard},
	{"DuplicateID", testWriteDuplicateID},
	{"Bulk", testWriteBulk},
	{"Concurrent", testWriteConcurrent},
	{"Invalid", testWriteInvalid},
}

// testWriteTransaction: messages exist if and only if the caller's
// transaction commits.
func testWriteTransaction(t *testing.T, open factory) {
	e := newEnv(t, open)
	tx := e.begin(t)
	if err := e.out.Write(t.Context(), tx, msg("c1", "", "k"), msg("c2", "", "")); err != nil {
		tx.Rollback()
		t.Fatalf("Outbox.Write: %v", err)
	}
	e.absent(t, "before commit, from another connection", "c1", "c2")
	wantIDs(t, "Fetch before commit", e.fetchLane(t, ferry.DefaultLane))
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	wantIDs(t, "Fetch after commit", e.fetchLane(t, ferry.DefaultLane), "c1", "c2")

	tx = e.begin(t)
	if err := e.out.Write(t.Context(), tx, msg("r1", "", "k"), msg("r2", "", "")); err != nil {
		tx.Rollback()
		t.Fatalf("Outbox.Write: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	e.absent(t, "after rollback", "r1", "r2")
	wantIDs(t, "Fetch after rollback", e.fetchLane(t, ferry.DefaultLane), "c1", "c2")
}

// binary is every byte value.
func binary() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// testWriteRoundTrip: every field a producer sets comes back as written.
func testWriteRoundTrip(t *testing.T, open factory) {
	e := newEnv(t, open)
	deliverAt := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	in := []ferry.Message{{
		ID:        "order-42/placed",
		Lane:      "online",
		Topic:     "orders.events",
		Key:       "order-42",
		Type:      "OrderPlaced",
		Headers:   map[string]string{"trace-id": "abc-123", "언어": "한국어 ✓ 🚢", "empty": "", "quote": `"{}\`},
		Payload:   binary(),
		DeliverAt: deliverAt,
	}, {
		ID:      "ключ-🔑",
		Lane:    "online",
		Topic:   "тема",
		Key:     "клиент/7 ✓",
		Type:    "Тип",
		Payload: []byte{},
	}, {
		ID:      "nil-payload",
		Lane:    "online",
		Topic:   "t",
		Payload: nil,
	}}
	before := time.Now()
	got := e.writeRecs(t, in...)
	for i, m := range in {
		r := got[i]
		if r.ID != m.ID || r.Lane != m.Lane || r.Topic != m.Topic || r.Key != m.Key || r.Type != m.Type {
			t.Errorf("message %s: want id %q lane %q topic %q key %q type %q, got id %q lane %q topic %q key %q type %q",
				m.ID, m.ID, m.Lane, m.Topic, m.Key, m.Type, r.ID, r.Lane, r.Topic, r.Key, r.Type)
		}
		if len(m.Headers) > 0 || len(r.Headers) > 0 {
			if !maps.Equal(r.Headers, m.Headers) {
				t.Errorf("message %s: want headers %q, got %q", m.ID, m.Headers, r.Headers)
			}
		}
		if string(r.Payload) != string(m.Payload) {
			t.Errorf("message %s: payload is %s", m.ID, bytesDiff(r.Payload, m.Payload))
		}
		if r.Status != ferry.StatusWaiting || r.Attempts != 0 || r.LastError != "" {
			t.Errorf("message %s: want WAITING, 0 attempts, no error; got %s, %d attempts, error %q", m.ID, r.Status, r.Attempts, r.LastError)
		}
		near(t, "message "+m.ID+" OccurredAt", r.OccurredAt, before, clockSlack)
		zero(t, "message "+m.ID+" ProcessedAt", r.ProcessedAt)
		zero(t, "message "+m.ID+" FailedAt", r.FailedAt)
		if i > 0 && r.Seq <= got[i-1].Seq {
			t.Errorf("message %s: want a Seq above the previous message's %d (messages of one Write keep their order), got %d", m.ID, got[i-1].Seq, r.Seq)
		}
	}
	near(t, "DeliverAt of "+in[0].ID, got[0].DeliverAt, deliverAt, timePrecision)
	near(t, "AvailableAt of "+in[0].ID+" (its DeliverAt)", got[0].AvailableAt, deliverAt, timePrecision)
	near(t, "AvailableAt of "+in[1].ID+" (no DeliverAt: now)", got[1].AvailableAt, before, clockSlack)

	// What Fetch returns is the same as what List returns.
	fetched := e.fetchLane(t, "online")
	wantIDs(t, "Fetch of lane online", fetched, idsOf(got)...)
	if len(fetched) == 3 && (string(fetched[0].Payload) != string(in[0].Payload) || !maps.Equal(fetched[0].Headers, in[0].Headers) || fetched[0].Key != in[0].Key) {
		t.Errorf("Fetch of %s: want the payload, headers and key written; got payload %s, headers %q, key %q",
			in[0].ID, bytesDiff(fetched[0].Payload, in[0].Payload), fetched[0].Headers, fetched[0].Key)
	}
}

// testWriteDefaults: a message with only a topic gets an id, the default
// lane, WAITING, no attempts, and times of now.
func testWriteDefaults(t *testing.T, open factory) {
	e := newEnv(t, open)
	before := time.Now()
	e.write(t, ferry.Message{Topic: "only-topic"}, ferry.Message{Topic: "only-topic"})
	recs := e.list(t, ferry.Filter{Topic: "only-topic"})
	if len(recs) != 2 {
		t.Fatalf("List by topic: want the 2 messages written, got %d", len(recs))
	}
	if recs[0].ID == "" || recs[0].ID == recs[1].ID {
		t.Errorf("generated ids: want two distinct non-empty ids, got %q and %q", recs[0].ID, recs[1].ID)
	}
	for _, r := range recs {
		if r.Lane != ferry.DefaultLane || r.Status != ferry.StatusWaiting || r.Attempts != 0 {
			t.Errorf("message %s: want lane %q, WAITING, 0 attempts; got lane %q, %s, %d attempts", r.ID, ferry.DefaultLane, r.Lane, r.Status, r.Attempts)
		}
		if r.Key != "" || r.Type != "" || len(r.Headers) != 0 || len(r.Payload) != 0 || r.LastError != "" {
			t.Errorf("message %s: want no key, type, headers, payload or error; got key %q, type %q, headers %q, %d payload bytes, error %q",
				r.ID, r.Key, r.Type, r.Headers, len(r.Payload), r.LastError)
		}
		near(t, "OccurredAt of "+r.ID, r.OccurredAt, before, clockSlack)
		near(t, "AvailableAt of "+r.ID, r.AvailableAt, before, clockSlack)
		zero(t, "ProcessedAt of "+r.ID, r.ProcessedAt)
		zero(t, "FailedAt of "+r.ID, r.FailedAt)
	}
	wantIDs(t, "Fetch of the default lane skipping delayed messages", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10}), idsOf(recs)...)
}

// testWriteShard: each message's shard is ferry.ShardOf its key, or of its
// id when it has no key, whoever computes it.
func testWriteShard(t *testing.T, open factory) {
	e := newEnv(t, open)
	keys := []string{"order-1", "order-2", "a", "Z", "ключ", "🔑", "키/값 ✓", "with space", "0", strings.Repeat("long-key/", 50)}
	var msgs []ferry.Message
	for i := range 40 {
		msgs = append(msgs, msg(fmt.Sprintf("keyed-%d", i), "", fmt.Sprintf("%s-%d", keys[i%len(keys)], i)))
	}
	for i, k := range keys {
		msgs = append(msgs, msg(fmt.Sprintf("key-%d", i), "", k))
	}
	for i := range 20 {
		msgs = append(msgs, msg(fmt.Sprintf("unkeyed-%d-ид", i), "", ""))
	}
	recs := e.writeRecs(t, msgs...)
	seen := map[int]bool{}
	for i, r := range recs {
		want := ferry.ShardOf(msgs[i].Key, msgs[i].ID)
		if r.Shard != want {
			t.Errorf("message %s (key %q): want shard %d (ferry.ShardOf), got %d", r.ID, r.Key, want, r.Shard)
		}
		seen[r.Shard] = true
	}
	if len(seen) < 10 {
		t.Errorf("%d messages with distinct keys fell in only %d shards; want them spread", len(recs), len(seen))
	}
}

// testWriteDuplicateID: writing an id that is stored is a silent no-op
// that keeps the first message, within one call, one transaction, or
// separate transactions, and even after the first was delivered.
func testWriteDuplicateID(t *testing.T, open factory) {
	e := newEnv(t, open)
	first := func(id string) ferry.Message {
		return ferry.Message{ID: id, Topic: "first", Key: "k", Payload: []byte("first")}
	}
	second := func(id string) ferry.Message {
		return ferry.Message{ID: id, Topic: "second", Key: "other", Payload: []byte("second")}
	}
	wantFirst := func(what, id string) {
		t.Helper()
		r := e.record(t, id)
		if r.Topic != "first" || string(r.Payload) != "first" || r.Key != "k" {
			t.Errorf("%s: want the first message of id %s kept (topic first, payload first), got topic %q, payload %q", what, id, r.Topic, r.Payload)
		}
	}

	e.write(t, first("d1"), second("d1"))
	wantFirst("one Write with the id twice", "d1")

	tx := e.begin(t)
	for _, m := range []ferry.Message{first("d2"), second("d2")} {
		if err := e.out.Write(t.Context(), tx, m); err != nil {
			tx.Rollback()
			t.Fatalf("second Write of id d2 in the same transaction: want nil, got %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	wantFirst("two Writes of one id in one transaction", "d2")

	e.write(t, first("d3"))
	e.write(t, second("d3"))
	wantFirst("two transactions writing one id", "d3")

	e.write(t, second("d1"), first("d4"))
	wantFirst("a stored id in a Write with a new one", "d1")
	wantFirst("a new id in a Write with a stored one", "d4")

	all := e.list(t, ferry.Filter{})
	wantIDs(t, "List after duplicate writes", all, "d1", "d2", "d3", "d4")

	e.done(t, e.record(t, "d3"))
	e.write(t, first("d3"))
	if r := e.record(t, "d3"); r.Status != ferry.StatusDone {
		t.Errorf("rewriting the id of a delivered message: want it to stay DONE, got %s", r.Status)
	}
	wantIDs(t, "Fetch after rewriting a delivered id", e.fetchLane(t, ferry.DefaultLane), "d1", "d2", "d4")
}

// testWriteBulk: 5,000 messages in one Write in one transaction are all
// stored, in order.
func testWriteBulk(t *testing.T, open factory) {
	e := newEnv(t, open)
	const n = 5000
	msgs := make([]ferry.Message, n)
	for i := range msgs {
		key := ""
		if i%3 != 0 {
			key = fmt.Sprintf("key-%d", i%97)
		}
		msgs[i] = ferry.Message{ID: fmt.Sprintf("bulk-%05d", i), Lane: "batch", Topic: "bulk", Key: key,
			Headers: map[string]string{"i": fmt.Sprint(i)}, Payload: fmt.Appendf(nil, "payload %d", i)}
	}
	e.write(t, msgs...)
	recs := e.fetch(t, ferry.FetchQuery{Lane: "batch", Limit: 2 * n})
	if len(recs) != n {
		t.Fatalf("Fetch after a bulk Write of %d messages: want %d, got %d", n, n, len(recs))
	}
	wantSeqOrder(t, "bulk Fetch", recs)
	for i, r := range recs {
		m := msgs[i]
		if r.ID != m.ID || r.Key != m.Key || string(r.Payload) != string(m.Payload) || r.Headers["i"] != m.Headers["i"] {
			t.Fatalf("bulk record %d: want %s key %q payload %q header i=%s (write order), got %s key %q payload %q header i=%s",
				i, m.ID, m.Key, m.Payload, m.Headers["i"], r.ID, r.Key, r.Payload, r.Headers["i"])
		}
	}
}

// testWriteConcurrent: producers writing at once all succeed and every
// message is stored once.
func testWriteConcurrent(t *testing.T, open factory) {
	e := newEnv(t, open)
	const writers, txs = 4, 15
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range txs {
				tx, err := e.db.BeginTx(t.Context(), nil)
				if err == nil {
					err = e.out.Write(t.Context(), tx,
						msg(fmt.Sprintf("w%d-%d-a", w, i), "", fmt.Sprintf("w%d", w)),
						msg(fmt.Sprintf("w%d-%d-b", w, i), "", ""))
					if err != nil {
						tx.Rollback()
					} else {
						err = tx.Commit()
					}
				}
				if err != nil {
					t.Errorf("writer %d, transaction %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	recs := e.fetchLane(t, ferry.DefaultLane)
	if len(recs) != writers*txs*2 {
		t.Errorf("after %d concurrent writers: want %d messages, got %d", writers, writers*txs*2, len(recs))
	}
	wantSeqOrder(t, "Fetch after concurrent writes", recs)
	// Each writer's messages are in the order it committed them.
	last := map[string]int64{}
	for _, r := range recs {
		if r.Key == "" {
			continue
		}
		if r.Seq <= last[r.Key] {
			t.Errorf("writer %s's messages out of commit order at %s", r.Key, r.ID)
		}
		last[r.Key] = r.Seq
	}
}

// testWriteInvalid: the Outbox refuses invalid input with a typed error
// and nothing of the call is stored, even if the caller commits.
func testWriteInvalid(t *testing.T, open factory) {
	e := newEnv(t, open)
	out := ferry.NewOutbox(e.s, ferry.WithMaxPayload(16), ferry.WithLanes(ferry.DefaultLane, "online"))
	good := msg("good", "", "k")
	good.Payload = []byte("0123456789abcdef") // exactly the limit
	tx := e.begin(t)
	defer tx.Rollback()

	err := out.Write(t.Context(), tx, good, ferry.Message{ID: "no-topic", Payload: []byte("x")})
	var invalid *ferry.InvalidMessageError
	if !errors.As(err, &invalid) || invalid.ID != "no-topic" || invalid.Field != "Topic" {
		t.Errorf("Write of a message without a topic: want *ferry.InvalidMessageError for no-topic, field Topic; got %T %v", err, err)
	}

	err = out.Write(t.Context(), tx, good, ferry.Message{ID: "too-big", Topic: "t", Payload: make([]byte, 17)})
	var tooBig *ferry.PayloadTooLargeError
	if !errors.As(err, &tooBig) || tooBig.ID != "too-big" || tooBig.Size != 17 || tooBig.Limit != 16 {
		t.Errorf("Write of a 17-byte payload with WithMaxPayload(16): want *ferry.PayloadTooLargeError{too-big, 17, 16}; got %T %v", err, err)
	}

	err = out.Write(t.Context(), tx, good, ferry.Message{ID: "bad-lane", Topic: "t", Lane: "offline"})
	var unknown *ferry.UnknownLaneError
	if !errors.As(err, &unknown) || unknown.ID != "bad-lane" || unknown.Lane != "offline" {
		t.Errorf("Write to a lane not in WithLanes: want *ferry.UnknownLaneError for bad-lane, lane offline; got %T %v", err, err)
	}

	if err := out.Write(t.Context(), nil, good); err == nil {
		t.Errorf("Write with a nil transaction: want an error, got nil")
	}

	if err := tx.Commit(); err != nil {
		t.Fatalf("commit after refused writes: %v", err)
	}
	if recs := e.list(t, ferry.Filter{}); len(recs) != 0 {
		t.Errorf("after refused writes and a commit: want nothing stored, got %v", idsOf(recs))
	}

	// The limits are inclusive: the valid message alone is written.
	tx2 := e.begin(t)
	defer tx2.Rollback()
	if err := out.Write(t.Context(), tx2, good); err != nil {
		t.Fatalf("Write of a payload of exactly the limit: want nil, got %v", err)
	}
	if err := tx2.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	wantIDs(t, "List after a valid write", e.list(t, ferry.Filter{}), "good")
}
