package jobs_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// The rescue tests kill a worker process with SIGKILL while it runs jobs
// and check that every one of its jobs is rescued exactly once: run again
// once, by another process, after the dead process's shard leases expire.
//
// The killed process is this test binary again, running
// TestRescueWorkerChild (as relay/crash_test.go does). Its worker records
// "started" in a side table of the database, committed, and then blocks
// until the process dies. The rescuers run in the test process; their
// worker records "started" and then "done". The side table, ordered by
// its serial, is the history of every run across processes.

// Environment of the worker child process (TestRescueWorkerChild).
const (
	envRescueChild  = "FERRY_RESCUE_CHILD" // set: this process is the worker to kill
	envRescueDSN    = "FERRY_RESCUE_DSN"
	envRescueTable  = "FERRY_RESCUE_TABLE"
	envRescueNode   = "FERRY_RESCUE_NODE"
	envRescueParent = "FERRY_RESCUE_PARENT"
)

// rescueTTL is the lease TTL of every client of the rescue tests, killed
// or not: the dead process's shards expire at most this long after it
// died, and its node no longer counts as live for the others' fair share.
const rescueTTL = 2 * time.Second

// rescueDeadline bounds every wait of the rescue tests (not a speed
// requirement: the rescue takes about rescueTTL).
const rescueDeadline = 30 * time.Second

type rescueJob struct {
	Name string `json:"name"`
}

func (rescueJob) Kind() string { return "rescue_job" }

// rescueWorkers returns workers that record each run of a rescueJob in
// the side table runs as node. With block, a run records its start and
// then waits for the end of its context (the killed process never gets
// there); without, it records its start and its end and succeeds.
func rescueWorkers(db *sql.DB, runs, node string, block bool) *jobs.Workers {
	w := jobs.NewWorkers()
	record := func(ctx context.Context, job *jobs.Job[rescueJob], event string) error {
		_, err := db.ExecContext(ctx, `INSERT INTO `+runs+` (node, name, job_id, attempt, event) VALUES ($1, $2, $3, $4, $5)`,
			node, job.Args.Name, job.ID, job.Attempt, event)
		return err
	}
	jobs.AddWorker(w, func(ctx context.Context, job *jobs.Job[rescueJob]) error {
		if err := record(ctx, job, "start"); err != nil {
			return err
		}
		if block {
			<-ctx.Done()
			return ctx.Err()
		}
		return record(ctx, job, "done")
	})
	return w
}

// TestRescueWorkerChild is the worker process that the rescue tests kill.
// Without FERRY_RESCUE_CHILD in its environment it does nothing.
func TestRescueWorkerChild(t *testing.T) {
	if os.Getenv(envRescueChild) == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// A failed or interrupted test must not leave this process behind.
		parent, _ := strconv.Atoi(os.Getenv(envRescueParent))
		for os.Getppid() == parent {
			time.Sleep(200 * time.Millisecond)
		}
		fmt.Fprintln(os.Stderr, "rescue test parent is gone; exiting")
		os.Exit(3)
	}()
	table, node := os.Getenv(envRescueTable), os.Getenv(envRescueNode)
	st, err := postgres.Open(ctx, os.Getenv(envRescueDSN), sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := jobs.NewClient(st, jobs.Config{
		Workers:  rescueWorkers(st.DB, table+"_runs", node, true),
		Node:     node,
		LeaseTTL: rescueTTL,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// rescueDB is the PostgreSQL outbox of one rescue test and its side table
// of runs.
type rescueDB struct {
	st    *postgres.Store
	dsn   string
	table string
	runs  string
}

func newRescueDB(t *testing.T) *rescueDB {
	t.Helper()
	dsn, table := testdb.PostgresDSN(t), testdb.Table(t)
	st, err := postgres.Open(context.Background(), dsn, sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	db := &rescueDB{st: st, dsn: dsn, table: table, runs: table + "_runs"}
	t.Cleanup(func() {
		st.DB.Exec("DROP TABLE IF EXISTS " + db.runs)
		testdb.DropOutbox(st.DB, table, st.Dialect())
		st.Close()
	})
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.Exec(`CREATE TABLE ` + db.runs + ` (seq BIGSERIAL PRIMARY KEY, node TEXT NOT NULL, name TEXT NOT NULL,
		job_id TEXT NOT NULL, attempt INT NOT NULL, event TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())`); err != nil {
		t.Fatal(err)
	}
	return db
}

// rescueRun is one row of the side table.
type rescueRun struct {
	seq     int64
	node    string
	name    string
	id      string
	attempt int
	event   string // start or done
	at      time.Time
}

func (db *rescueDB) history(t *testing.T) []rescueRun {
	t.Helper()
	rows, err := db.st.DB.Query(`SELECT seq, node, name, job_id, attempt, event, at FROM ` + db.runs + ` ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []rescueRun
	for rows.Next() {
		var r rescueRun
		if err := rows.Scan(&r.seq, &r.node, &r.name, &r.id, &r.attempt, &r.event, &r.at); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// owners returns how many live shard leases each node holds.
func (db *rescueDB) owners(t *testing.T) map[string]int {
	t.Helper()
	rows, err := db.st.DB.Query(`SELECT owner, COUNT(*) FROM ` + db.table + `_shards WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var node string
		var n int
		if err := rows.Scan(&node, &n); err != nil {
			t.Fatal(err)
		}
		out[node] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// shardsOf returns the shards node holds.
func (db *rescueDB) shardsOf(t *testing.T, node string) map[int]bool {
	t.Helper()
	rows, err := db.st.DB.Query(`SELECT shard FROM `+db.table+`_shards WHERE owner = $1`, node)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var sh int
		if err := rows.Scan(&sh); err != nil {
			t.Fatal(err)
		}
		out[sh] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rescueChild is a worker child process.
type rescueChild struct {
	node string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// startRescueChild starts a worker child process named node. It is killed
// when the test ends, if the test did not kill it before.
func startRescueChild(t *testing.T, db *rescueDB, node string) *rescueChild {
	t.Helper()
	c := &rescueChild{node: node, log: filepath.Join(t.TempDir(), node+".log"), done: make(chan struct{})}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own copy once started
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestRescueWorkerChild$", "-test.count=1", "-test.timeout=2m")
	c.cmd.Env = append(os.Environ(), envRescueChild+"=1", envRescueDSN+"="+db.dsn, envRescueTable+"="+db.table,
		envRescueNode+"="+node, envRescueParent+"="+strconv.Itoa(os.Getpid()))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start worker child: %v", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			data, _ := os.ReadFile(c.log)
			lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
			t.Logf("last lines of worker child %s's log:\n%s", node, bytes.Join(lines[max(0, len(lines)-30):], []byte("\n")))
		}
	})
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *rescueChild) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

func (c *rescueChild) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// runRescuer runs a client of db named node in this process, whose worker
// completes jobs, until the returned stop is called or the test ends.
func runRescuer(t *testing.T, db *rescueDB, node string) (stop func()) {
	t.Helper()
	c, err := jobs.NewClient(db.st, jobs.Config{Workers: rescueWorkers(db.st.DB, db.runs, node, false),
		Node: node, LeaseTTL: rescueTTL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", node, err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// rescuePoll waits until cond holds, failing the test after rescueDeadline.
func rescuePoll(t *testing.T, what string, child *rescueChild, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(rescueDeadline)
	for !cond() {
		if child != nil && child.exited() {
			t.Fatalf("waiting for %s: worker child %s exited by itself: %v", what, child.node, child.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", rescueDeadline, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rescuePlan is a job of a rescue test.
type rescuePlan struct {
	name, key string
	// killed: the job is in a shard of the process that is killed.
	killed bool
	// after names the job of the same key inserted before this one: this
	// one waits behind it in the killed process and runs only once it is
	// done.
	after string
}

// rescueScenario runs jobs on the killed process's shards (and, with
// survivors, on theirs), waits until the killed process started those it
// can, kills it with SIGKILL, and checks that the rescuers — a client
// started after the kill, or the survivors already running — run each of
// them exactly once more, to completion.
func rescueScenario(t *testing.T, survivors []string) {
	db := newRescueDB(t)
	const victim = "rescue-killed"
	child := startRescueChild(t, db, victim)
	stops := map[string]func(){}
	for _, node := range survivors {
		stops[node] = runRescuer(t, db, node)
	}
	// Wait until the leases are settled, so that the victim's shards are
	// its own until it dies: every shard held, nobody above its fair share.
	nodes := 1 + len(survivors)
	fair := (ferry.Shards + nodes - 1) / nodes
	rescuePoll(t, "the shard leases to settle", child, func() bool {
		o := db.owners(t)
		total := 0
		for _, n := range o {
			total += n
		}
		return len(o) == nodes && total == ferry.Shards && o[victim] > 0 && slices.Max(slices.Collect(maps.Values(o))) <= fair
	})
	victimShards := db.shardsOf(t, victim)

	// Five jobs of distinct keys that run in parallel in the victim, two
	// jobs of one key (the second waits behind the first), and with
	// survivors one job in each of their shards, which must not be
	// disturbed.
	var plan []rescuePlan
	keyIn := func(prefix string, victims bool) string {
		for i := 0; ; i++ {
			k := fmt.Sprintf("%s-%d", prefix, i)
			if victimShards[ferry.ShardOf(k, "")] == victims {
				return k
			}
		}
	}
	for i := range 5 {
		plan = append(plan, rescuePlan{name: fmt.Sprintf("job%d", i), key: keyIn(fmt.Sprintf("distinct%d", i), true), killed: true})
	}
	shared := keyIn("shared", true)
	plan = append(plan, rescuePlan{name: "first", key: shared, killed: true},
		rescuePlan{name: "second", key: shared, killed: true, after: "first"})
	for i := range survivors {
		plan = append(plan, rescuePlan{name: fmt.Sprintf("bystander%d", i), key: keyIn(fmt.Sprintf("bystander%d", i), false)})
	}

	ins, err := jobs.NewClient(db.st, jobs.Config{Workers: rescueWorkers(nil, "", "", false), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, p := range plan {
		ids[p.name] = insert(t, db.st, ins, rescueJob{Name: p.name}, &jobs.InsertOpts{Key: p.key})
	}

	// The victim starts every job it can; the survivors finish theirs.
	rescuePoll(t, "the victim to start its jobs", child, func() bool {
		started, finished := map[string]bool{}, map[string]bool{}
		for _, r := range db.history(t) {
			if r.node == victim && r.event == "start" {
				started[r.name] = true
			}
			if r.event == "done" {
				finished[r.name] = true
			}
		}
		for _, p := range plan {
			if (p.killed && p.after == "" && !started[p.name]) || (!p.killed && !finished[p.name]) {
				return false
			}
		}
		return true
	})
	for _, r := range db.history(t) {
		if r.name == "second" {
			t.Fatalf("before the kill, job second ran (%+v) although job first, of the same key, had not finished", r)
		}
	}
	var lastBeforeKill int64
	if h := db.history(t); len(h) > 0 {
		lastBeforeKill = h[len(h)-1].seq
	}

	killedAt := time.Now()
	child.kill()
	if len(survivors) == 0 {
		stops["rescuer"] = runRescuer(t, db, "rescuer")
	}

	// Every job is done, once the victim's leases expired.
	rescuePoll(t, "the victim's jobs to be rescued", nil, func() bool {
		done, err := db.st.List(context.Background(), ferry.Filter{Status: ferry.StatusDone, Limit: len(plan) + 1})
		if err != nil {
			t.Fatal(err)
		}
		return len(done) == len(plan)
	})
	rescued := time.Since(killedAt)
	// Leave the rescuers time for a run too many: rescan passes (every
	// second) and lease renewals. Then stop them, so that nothing runs
	// while the history is read.
	time.Sleep(rescueTTL)
	for _, stop := range stops {
		stop()
	}

	history := db.history(t)
	byName := map[string][]rescueRun{}
	for _, r := range history {
		byName[r.name] = append(byName[r.name], r)
	}
	rescuers := map[string][]string{} // node → the jobs it rescued
	var firstRescue time.Duration
	for _, p := range plan {
		runs := byName[p.name]
		var victimStarts, otherStarts, dones []rescueRun
		for _, r := range runs {
			switch {
			case r.event == "start" && r.node == victim:
				victimStarts = append(victimStarts, r)
			case r.event == "start":
				otherStarts = append(otherStarts, r)
			case r.event == "done":
				dones = append(dones, r)
			}
			if r.node == victim && r.event != "start" {
				t.Errorf("job %s: the killed process recorded %+v", p.name, r)
			}
			if r.attempt != 1 {
				// The killed run recorded nothing: it is not a failed
				// attempt, and the rescue is still the job's first.
				t.Errorf("job %s: run %+v has Attempt %d; want 1", p.name, r, r.attempt)
			}
			if r.id != ids[p.name] {
				t.Errorf("job %s: run %+v has id %s; want %s", p.name, r, r.id, ids[p.name])
			}
		}
		wantVictim := 0
		if p.killed && p.after == "" {
			wantVictim = 1
		}
		if len(victimStarts) != wantVictim {
			t.Errorf("job %s: started %d times in the killed process; want %d: %+v", p.name, len(victimStarts), wantVictim, runs)
		}
		if len(otherStarts) != 1 || len(dones) != 1 {
			t.Errorf("job %s: after the kill, started %d times and finished %d times; want exactly once each: %+v",
				p.name, len(otherStarts), len(dones), runs)
			continue
		}
		if s, d := otherStarts[0], dones[0]; s.node != d.node || s.seq > d.seq {
			t.Errorf("job %s: started by %s and finished by %s, in that order: %+v", p.name, s.node, d.node, runs)
		}
		if p.killed {
			rescuers[otherStarts[0].node] = append(rescuers[otherStarts[0].node], p.name)
			if otherStarts[0].seq <= lastBeforeKill {
				t.Errorf("job %s: run by %s before the victim was killed: %+v", p.name, otherStarts[0].node, runs)
			}
			if d := otherStarts[0].at.Sub(killedAt); firstRescue == 0 || d < firstRescue {
				firstRescue = d
			}
		}
		if p.after != "" {
			prev := byName[p.after]
			if len(prev) == 0 || prev[len(prev)-1].event != "done" || prev[len(prev)-1].seq > otherStarts[0].seq {
				t.Errorf("job %s started before job %s, of the same key, finished: %+v then %+v", p.name, p.after, prev, runs)
			}
		}
	}

	// In the store: every job DONE, never failed, nothing left WAITING.
	waiting, err := db.st.List(context.Background(), ferry.Filter{Status: ferry.StatusWaiting})
	if err != nil {
		t.Fatal(err)
	}
	if len(waiting) != 0 {
		t.Errorf("%d jobs still WAITING after the rescue: %+v", len(waiting), waiting)
	}
	for _, p := range plan {
		if rec := status(t, db.st, ids[p.name]); rec.Status != ferry.StatusDone || rec.Attempts != 0 {
			t.Errorf("job %s: %s with %d failed attempts (%q); want DONE with 0", p.name, rec.Status, rec.Attempts, rec.LastError)
		}
	}
	all, err := db.st.List(context.Background(), ferry.Filter{Limit: len(plan) + 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(plan) {
		t.Errorf("%d jobs in the table; want the %d inserted", len(all), len(plan))
	}
	t.Logf("SIGKILL with %d jobs running: all done %v after the kill (first rescued run started after %v; lease TTL %v); rescued by %v; %d runs recorded",
		len(plan)-len(survivors)-1, rescued.Round(time.Millisecond), firstRescue.Round(time.Millisecond), rescueTTL, rescuers, len(history))
}

// A worker process killed with SIGKILL mid-job leads to exactly one
// rescue: a client started after the kill runs each of its jobs once more
// (still Attempt 1: the killed run recorded no failure), and a job of the
// same key queued behind one of them runs after it.
func TestRescueKilledWorker(t *testing.T) {
	rescueScenario(t, nil)
}

// With two live clients beside the killed one, the killed one's jobs are
// rescued by the survivors exactly once between them, and the survivors'
// own jobs run once.
func TestRescueKilledWorkerSurvivors(t *testing.T) {
	rescueScenario(t, []string{"rescue-survivor-a", "rescue-survivor-b"})
}
