package relay_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// The crash test's size. The default keeps it well under a minute per
// database; the full run is
//
//	go test ./relay -run 'TestCrashRecovery/postgres' -crash.messages=100000 -timeout 30m -v
//
// (or FERRY_CRASH_MESSAGES=100000; drop /postgres to run every database).
var (
	crashMessages = flag.Int("crash.messages", 0,
		"messages TestCrashRecovery commits per database (default $FERRY_CRASH_MESSAGES, else 20000)")
	crashRate = flag.Int("crash.rate", 1000,
		"messages per second the TestCrashRecovery producer writes")
)

const (
	crashKeys    = 200
	crashWriters = 4 // each owns the keys i with i % crashWriters == its number
	crashMaxTx   = 50
)

// Environment of the relay child process (TestCrashRelayChild).
const (
	envChild   = "FERRY_CRASH_CHILD" // set: this process is a crash-test relay
	envDialect = "FERRY_CRASH_DIALECT"
	envDSN     = "FERRY_CRASH_DSN"
	envTable   = "FERRY_CRASH_TABLE"
	envOut     = "FERRY_CRASH_OUT"
	envNode    = "FERRY_CRASH_NODE"
	envParent  = "FERRY_CRASH_PARENT"
)

func crashMessageCount(t *testing.T) int {
	if *crashMessages > 0 {
		return *crashMessages
	}
	if v := os.Getenv("FERRY_CRASH_MESSAGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("FERRY_CRASH_MESSAGES=%q: want a positive number", v)
		}
		return n
	}
	return 20000
}

// crashDB is a migrated outbox and what a child process needs to open it.
type crashDB struct {
	ts      testStore
	dialect string
	dsn     string
}

// TestCrashRecovery kills relays with SIGKILL, again and again, while a
// producer writes, and checks the guarantees of the package documentation:
// every committed message is delivered at least once, no rolled-back one
// ever is, each key's messages are first delivered in commit order, and
// nothing is left WAITING or FAILED.
//
// The relays run in child processes (this test binary, running
// TestCrashRelayChild) whose destination appends one line per delivered
// message to a shared file opened with O_APPEND. Each line is one write(2):
// once the call returns the line is in the kernel's page cache and survives
// the SIGKILL of the process (only a crash of the machine would need
// fsync), and appends of concurrent processes never interleave. So the file
// is the exact order in which the destination accepted messages, across
// processes. Part of the time two relays run at once, so that the shards of
// the one killed move to the other (LeaseTTL 1s).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test takes about a minute per database; run it without -short")
	}
	total := crashMessageCount(t)
	for _, db := range []struct {
		name string
		open func(t *testing.T) crashDB
	}{
		{"postgres", func(t *testing.T) crashDB {
			ts := postgresStore(t)
			return crashDB{ts: ts, dialect: "postgres", dsn: testdb.PostgresDSN(t)}
		}},
		{"mysql", func(t *testing.T) crashDB {
			ts := mysqlStore(t)
			return crashDB{ts: ts, dialect: "mysql", dsn: testdb.MySQLDSN(t)}
		}},
		{"sqlite", func(t *testing.T) crashDB {
			path := filepath.Join(t.TempDir(), "crash.db")
			s, err := sqlite.Open(context.Background(), path, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return crashDB{ts: testStore{Store: s, db: s.DB, table: sqlstore.DefaultTable}, dialect: "sqlite", dsn: path}
		}},
	} {
		t.Run(db.name, func(t *testing.T) { runCrash(t, db.open(t), total) })
	}
}

func runCrash(t *testing.T, db crashDB, total int) {
	began := time.Now()
	dir := t.TempDir()
	if keep := os.Getenv("FERRY_CRASH_DIR"); keep != "" {
		// Keep the delivery file and the relays' logs for a post-mortem.
		dir = filepath.Join(keep, fmt.Sprintf("%s-%d", db.dialect, time.Now().UnixNano()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("keeping the delivery file and relay logs in %s", dir)
	}
	out := filepath.Join(dir, "delivered")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prod := newCrashProducer(db.ts)
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		prod.run(ctx, t, total, *crashRate)
	}()
	defer func() { cancel(); <-prodDone }()

	sup := &supervisor{t: t, db: db, dir: dir, out: out}
	t.Cleanup(sup.killAll)

	// Kill a relay every 0.3–2s until the producer is done and every
	// committed message is DONE. Each round runs one or two relays.
	var (
		live              []*child
		kills, handovers  int
		lastDone          = -1
		lastProgress      = time.Now()
		produced, drained time.Duration
	)
	for round := 0; ; round++ {
		finished := false
		select {
		case <-prodDone:
			finished = true
			if produced == 0 {
				produced = time.Since(began)
			}
		default:
		}
		if t.Failed() {
			t.FailNow() // the producer failed
		}
		counts := statusCounts(t, db.ts)
		if finished && counts[ferry.StatusDone] == prod.committedCount() && len(counts) == 1 {
			break
		}
		if counts[ferry.StatusDone] != lastDone {
			lastDone, lastProgress = counts[ferry.StatusDone], time.Now()
		} else if time.Since(lastProgress) > 2*time.Minute {
			sup.dumpLogs(live)
			t.Fatalf("no message became DONE for 2 minutes (statuses %v, %d committed, producer finished: %v)",
				counts, prod.committedCount(), finished)
		}
		want := 1 + rand.IntN(2)
		for len(live) < want {
			live = append(live, sup.start(""))
		}
		time.Sleep(time.Duration(300+rand.IntN(1700)) * time.Millisecond)
		for _, c := range live {
			if c.exited() {
				sup.dumpLogs([]*child{c})
				t.Fatalf("relay %s exited by itself: %v", c.node, c.err)
			}
		}
		i := rand.IntN(len(live))
		live[i].kill()
		kills++
		if len(live) == 2 {
			handovers++ // the other relay takes over the killed one's shards
		}
		live = slices.Delete(live, i, i+1)
	}
	drained = time.Since(began)
	for _, c := range live {
		c.kill()
		kills++
	}

	// A last relay starts cleanly, takes every shard once the dead
	// relays' leases expire, finds nothing to deliver, and stops cleanly
	// on SIGTERM, releasing its shards.
	before := fileSize(t, out)
	final := sup.start("crash-final")
	waitFor(t, "the final relay to hold every shard", func() bool {
		if final.exited() {
			sup.dumpLogs([]*child{final})
			t.Fatalf("the final relay exited by itself: %v", final.err)
		}
		return shardOwners(t, db.ts)[final.node] == ferry.Shards
	})
	time.Sleep(time.Second) // a few rescan passes: there must be nothing to deliver
	if err := final.stop(); err != nil {
		sup.dumpLogs([]*child{final})
		t.Fatalf("the final relay did not stop cleanly on SIGTERM: %v", err)
	}
	if owners := shardOwners(t, db.ts); len(owners) != 0 {
		t.Errorf("after the final relay stopped, shards are still leased: %v; want all released", owners)
	}
	if after := fileSize(t, out); after != before {
		t.Errorf("the final relay delivered %d bytes of messages although every message was DONE", after-before)
	}

	st := checkDeliveries(t, out, prod)
	if counts := statusCounts(t, db.ts); len(counts) != 1 || counts[ferry.StatusDone] != prod.committedCount() {
		t.Errorf("statuses at the end: %v; want only DONE, %d of them", counts, prod.committedCount())
	}
	t.Logf("%s: committed %d messages in %d transactions (rolled back: %d transactions, %d messages); "+
		"delivered lines %d, unique %d, duplicates %d (by the same relay again: %d), torn writes %d; kills %d (with a second relay taking over: %d), "+
		"relay starts %d; produced in %v, all DONE after %v, total %v",
		db.dialect, prod.committedCount(), prod.txs, prod.rbTxs, len(prod.rolledBack),
		st.lines, st.unique, st.lines-st.unique, st.sameRelay, st.torn, kills, handovers,
		sup.started, produced.Round(time.Millisecond), drained.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// crashProducer writes the test's messages and remembers what committed.
type crashProducer struct {
	ts testStore

	mu         sync.Mutex
	payload    map[string]string   // id → payload, of everything written
	keyOf      map[string]string   // id → key
	order      map[string][]string // key → committed ids in commit order
	rolledBack map[string]bool
	committed  int
	txs, rbTxs int
}

func newCrashProducer(ts testStore) *crashProducer {
	return &crashProducer{ts: ts, payload: map[string]string{}, keyOf: map[string]string{},
		order: map[string][]string{}, rolledBack: map[string]bool{}}
}

func (p *crashProducer) committedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.committed
}

// run commits about total messages at perSecond, from crashWriters
// goroutines. Each writer alone writes its keys and commits one
// transaction after the other, so each key's commit order is exactly the
// order of its writer's commits. A tenth of the transactions roll back
// after writing.
func (p *crashProducer) run(ctx context.Context, t *testing.T, total, perSecond int) {
	lim := rate.NewLimiter(rate.Limit(perSecond), crashMaxTx)
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Go(func() {
			outbox := ferry.NewOutbox(p.ts)
			next := map[string]int{} // per key: the number of its next message
			target := total / crashWriters
			if w == 0 {
				target += total % crashWriters
			}
			for seq, done := 0, 0; done < target && ctx.Err() == nil; {
				n := min(1+rand.IntN(crashMaxTx), target-done)
				if err := lim.WaitN(ctx, n); err != nil {
					return
				}
				msgs := make([]ferry.Message, n)
				for i := range msgs {
					key := fmt.Sprintf("k%03d", w+crashWriters*rand.IntN(crashKeys/crashWriters))
					id := fmt.Sprintf("w%d-%d", w, seq)
					seq++
					msgs[i] = ferry.Message{ID: id, Topic: "crash", Key: key,
						Payload: []byte(fmt.Sprintf("%s/%d/%s", key, next[key], id))}
					next[key]++
				}
				rollback := rand.IntN(10) == 0
				ok, err := p.writeTx(ctx, outbox, msgs, rollback)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				p.mu.Lock()
				p.txs++
				for _, m := range msgs {
					p.payload[m.ID], p.keyOf[m.ID] = string(m.Payload), m.Key
					if ok {
						p.order[m.Key] = append(p.order[m.Key], m.ID)
					} else {
						p.rolledBack[m.ID] = true
					}
				}
				if ok {
					p.committed += n
					done += n
				} else {
					p.rbTxs++
				}
				p.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// writeTx writes msgs in one transaction and commits it, or rolls it back
// if rollback is set or the database refused it as a lock conflict. It
// reports whether the messages committed.
func (p *crashProducer) writeTx(ctx context.Context, outbox *ferry.Outbox, msgs []ferry.Message, rollback bool) (bool, error) {
	tx, err := p.ts.db.BeginTx(ctx, nil)
	if err != nil {
		if isBusy(err) {
			return false, nil
		}
		return false, err
	}
	if err := outbox.Write(ctx, tx, msgs...); err != nil {
		tx.Rollback()
		if isBusy(err) {
			return false, nil
		}
		return false, err
	}
	if rollback {
		return false, tx.Rollback()
	}
	if err := tx.Commit(); err != nil {
		// A failed COMMIT may still have committed: ask the database.
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		got, lerr := p.ts.List(ctx, ferry.Filter{IDs: ids, Limit: len(ids)})
		switch {
		case lerr != nil:
			return false, fmt.Errorf("commit: %v; and then listing its messages: %v", err, lerr)
		case len(got) == 0:
			return false, nil
		case len(got) == len(ids):
			return true, nil
		default:
			return false, fmt.Errorf("commit: %v; and %d of its %d messages are stored", err, len(got), len(ids))
		}
	}
	return true, nil
}

// statusCounts counts the outbox's messages by status.
func statusCounts(t *testing.T, ts testStore) map[ferry.Status]int {
	t.Helper()
	rows, err := ts.db.Query(`SELECT status, COUNT(*) FROM ` + ts.table + ` GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[ferry.Status]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[ferry.Status(s)] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

type deliveryStats struct {
	lines, unique, torn int
	// sameRelay counts duplicates delivered again by a relay that had
	// already delivered them (rather than by the next owner of the shard).
	sameRelay int
}

// checkDeliveries reads the delivery file and checks it against what the
// producer committed.
func checkDeliveries(t *testing.T, path string, p *crashProducer) deliveryStats {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st deliveryStats
	firsts := map[string][]string{} // key → ids in order of first delivery
	seen := map[string]bool{}
	by := map[string]map[string]bool{} // id → the relays that delivered it
	problems := 0
	problem := func(format string, args ...any) {
		t.Helper()
		if problems++; problems <= 20 {
			t.Errorf(format, args...)
		}
	}
	lines := strings.Split(string(data), "\n")
	if last := lines[len(lines)-1]; last != "" {
		st.torn++ // the last write was cut short by a kill, and nothing came after it
	}
	for _, line := range lines[:len(lines)-1] {
		// A write cut short by SIGKILL (the kernel may stop a write between
		// pages) leaves a fragment that the next line continues. Every line
		// starts with '@', so the complete line is what follows the last.
		at := strings.LastIndexByte(line, '@')
		if at != 0 {
			st.torn++
		}
		if at < 0 {
			continue
		}
		f := strings.Split(line[at+1:], "\t")
		if len(f) != 4 {
			problem("malformed delivery line %q", line)
			continue
		}
		id, key, payload, node := f[0], f[1], f[2], f[3]
		st.lines++
		want, written := p.payload[id]
		switch {
		case !written:
			problem("delivered %s, which was never written", id)
			continue
		case p.rolledBack[id]:
			problem("delivered %s, which was rolled back", id)
			continue
		case key != p.keyOf[id] || payload != want:
			problem("message %s delivered with key %q and payload %q; want %q and %q", id, key, payload, p.keyOf[id], want)
		}
		if !seen[id] {
			seen[id] = true
			st.unique++
			firsts[p.keyOf[id]] = append(firsts[p.keyOf[id]], id)
			by[id] = map[string]bool{}
		}
		if by[id][node] {
			st.sameRelay++
		}
		by[id][node] = true
	}
	missing := 0
	for key, want := range p.order {
		got := firsts[key]
		for _, id := range want {
			if !seen[id] {
				if missing++; missing <= 10 {
					t.Errorf("committed message %s (key %s) was never delivered", id, key)
				}
			}
		}
		if missing == 0 && !slices.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			problem("key %s: first deliveries diverge from commit order at position %d: delivered %v, committed %v",
				key, i, got[i:min(len(got), i+5)], want[i:min(len(want), i+5)])
		}
	}
	if missing > 0 {
		t.Errorf("%d committed messages were never delivered", missing)
	}
	return st
}

// supervisor starts and kills relay child processes.
type supervisor struct {
	t       *testing.T
	db      crashDB
	dir     string
	out     string
	mu      sync.Mutex
	all     []*child
	started int
}

type child struct {
	node string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// start runs a relay child named node ("" for the next crash-N).
func (s *supervisor) start(node string) *child {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started++
	if node == "" {
		node = fmt.Sprintf("crash-%d", s.started)
	}
	c := &child{node: node, log: filepath.Join(s.dir, node+".log"), done: make(chan struct{})}
	logf, err := os.Create(c.log)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close() // the child has its own copy once started
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestCrashRelayChild$", "-test.count=1", "-test.timeout=30m")
	c.cmd.Env = append(os.Environ(),
		envChild+"=1", envDialect+"="+s.db.dialect, envDSN+"="+s.db.dsn, envTable+"="+s.db.ts.table,
		envOut+"="+s.out, envNode+"="+node, envParent+"="+strconv.Itoa(os.Getpid()))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		s.t.Fatalf("start relay child: %v", err)
	}
	s.all = append(s.all, c)
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop sends SIGTERM and returns the exit status.
func (c *child) stop() error {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(60 * time.Second):
		c.kill()
		return errors.New("still running 60s after SIGTERM")
	}
}

func (s *supervisor) killAll() {
	s.mu.Lock()
	all := s.all
	s.mu.Unlock()
	for _, c := range all {
		c.kill()
	}
}

// dumpLogs shows the end of the children's logs.
func (s *supervisor) dumpLogs(cs []*child) {
	for _, c := range cs {
		data, _ := os.ReadFile(c.log)
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		lines = lines[max(0, len(lines)-40):]
		s.t.Logf("last lines of relay %s's log:\n%s", c.node, bytes.Join(lines, []byte("\n")))
	}
}

// TestCrashRelayChild is the relay process of TestCrashRecovery. Without
// FERRY_CRASH_CHILD in its environment it does nothing.
func TestCrashRelayChild(t *testing.T) {
	if os.Getenv(envChild) == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go watchParent(stop)

	var (
		st  ferry.Store
		err error
	)
	opts := sqlstore.Options{Table: os.Getenv(envTable)}
	switch d, dsn := os.Getenv(envDialect), os.Getenv(envDSN); d {
	case "postgres":
		st, err = postgres.Open(ctx, dsn, opts)
	case "mysql":
		st, err = mysql.Open(ctx, dsn, opts)
	case "sqlite":
		st, err = sqlite.Open(ctx, dsn, opts)
	default:
		t.Fatalf("%s=%q", envDialect, d)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	node := os.Getenv(envNode)
	f, err := os.OpenFile(os.Getenv(envOut), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dest := ferry.DestinationFunc(func(ctx context.Context, r *ferry.Record) error {
		// A broker's round trip, so that deliveries overlap and kills
		// land in the middle of them.
		time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
		if err := ctx.Err(); err != nil {
			return err
		}
		// One write(2) per line; see TestCrashRecovery.
		_, err := f.Write([]byte("@" + r.ID + "\t" + r.Key + "\t" + string(r.Payload) + "\t" + node + "\n"))
		return err
	})

	level := slog.LevelInfo
	if os.Getenv("FERRY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	// Every other relay polls its busy lane (see Options.PollAbove: the
	// crash producer's commits are well above 20 a second), so kills land
	// on polling relays, notified ones and pairs of both.
	pollAbove := 0.0
	if n, err := strconv.Atoi(strings.TrimPrefix(node, "crash-")); err == nil && n%2 == 1 {
		pollAbove = 20
	}
	r, err := relay.New(relay.Options{
		Store:           st,
		Node:            node,
		PollAbove:       pollAbove,
		Lanes:           []relay.Lane{{Name: ferry.DefaultLane, Concurrency: 16}},
		Routes:          []relay.Route{{Topic: "*", Destination: dest}},
		LeaseTTL:        time.Second,
		RescanInterval:  200 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// watchParent ends the child if the test that started it is gone, so a
// failed or interrupted test leaves no relay running.
func watchParent(stop func()) {
	parent, _ := strconv.Atoi(os.Getenv(envParent))
	for {
		time.Sleep(200 * time.Millisecond)
		if os.Getppid() != parent {
			fmt.Fprintln(os.Stderr, "crash test parent is gone; exiting")
			stop()
			time.Sleep(10 * time.Second)
			os.Exit(3)
		}
	}
}
