package jobs_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/jobs"
)

// Digest is a job kind for the priority tests: Tag says where it came
// from.
type Digest struct {
	Tag string `json:"tag"`
	N   int    `json:"n"`
}

func (Digest) Kind() string { return "digest" }

// starts records the order in which jobs start.
type starts struct {
	mu   sync.Mutex
	tags []string
}

func (s *starts) add(tag string) {
	s.mu.Lock()
	s.tags = append(s.tags, tag)
	s.mu.Unlock()
}

func (s *starts) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tags...)
}

func reportWorkers(t *testing.T, s *starts, d time.Duration) *jobs.Workers {
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Digest]) error {
		s.add(job.Args.Tag)
		if want := job.Args.Tag; strings.HasPrefix(want, "p") && want[1:] != string(rune('0'+job.Priority)) {
			t.Errorf("a %s job has Job.Priority %d", want, job.Priority)
		}
		time.Sleep(d)
		return nil
	})
	return workers
}

// Within a queue, a free worker always takes a job of the first level
// that has one: the level 3 backlog waits while level 1 jobs remain,
// whatever the insert order.
func TestPrioritiesWithinQueue(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store) {
		var s starts
		c, err := jobs.NewClient(st, jobs.Config{Workers: reportWorkers(t, &s, time.Millisecond), Logger: quiet,
			Queues: map[string]jobs.Queue{"reports": {Concurrency: 2, Priorities: 3}}})
		if err != nil {
			t.Fatal(err)
		}
		const n = 100
		for i := range n {
			insert(t, st, c, Digest{Tag: "p3", N: i}, &jobs.InsertOpts{Queue: "reports", Priority: 3})
		}
		var urgent string
		for i := range n {
			urgent = insert(t, st, c, Digest{Tag: "p1", N: i}, &jobs.InsertOpts{Queue: "reports", Priority: 1})
		}
		start(t, c)
		waitFor(t, "all jobs", func() bool { return len(s.snapshot()) == 2*n })
		got := s.snapshot()
		first1, last1, between := slices.Index(got, "p1"), 0, 0
		for i, tag := range got {
			if tag == "p1" {
				last1 = i
			}
		}
		for _, tag := range got[first1:last1] {
			if tag == "p3" {
				between++
			}
		}
		// The levels are lanes that start together, so level 3 jobs may
		// start before level 1 has read its own. From the first level 1
		// start on, only jobs already given a worker may start before the
		// last.
		if between > 2 {
			t.Errorf("%d level 3 jobs started between the first and the last level 1 job; want at most 2, the queue's workers (order %v)",
				between, got[:min(len(got), 40)])
		}
		if err := c.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		info, err := c.Job(context.Background(), urgent)
		if err != nil {
			t.Fatal(err)
		}
		if info.Queue != "reports" || info.Priority != 1 {
			t.Errorf("Job(%s) = queue %q priority %d", urgent, info.Queue, info.Priority)
		}
	})
}

// Queues sharing a pool: a free worker goes to the queue of lowest
// Priority first (strict), and between queues of equal Priority by
// Weight; the pool's concurrency holds across them.
func TestQueuesSharingAPool(t *testing.T) {
	st := postgresStore(t)
	var s starts
	var running, peak atomic.Int64
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Digest]) error {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		s.add(job.Queue)
		time.Sleep(2 * time.Millisecond)
		running.Add(-1)
		return nil
	})
	c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet,
		Pools: map[string]int{"shared": 4},
		Queues: map[string]jobs.Queue{
			"critical": {Pool: "shared", Priority: 0},
			"heavy":    {Pool: "shared", Priority: 1, Weight: 3},
			"light":    {Pool: "shared", Priority: 1, Weight: 1},
		}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for _, q := range []string{"light", "heavy", "critical"} {
		for i := range n {
			insert(t, st, c, Digest{Tag: q, N: i}, &jobs.InsertOpts{Queue: q})
		}
	}
	start(t, c)
	waitFor(t, "all jobs", func() bool { return len(s.snapshot()) == 3*n })
	got := s.snapshot()
	count := func(tags []string) map[string]int {
		m := map[string]int{}
		for _, tag := range tags {
			m[tag]++
		}
		return m
	}
	firstCritical, lastCritical := slices.Index(got, "critical"), 0
	for i, q := range got {
		if q == "critical" {
			lastCritical = i
		}
	}
	// The queues start together, so the lower ones may start jobs before
	// the critical queue has read its own. From its first start on, only
	// jobs already given a worker may start before its last.
	if early := count(got[firstCritical:lastCritical]); early["heavy"]+early["light"] > 4 {
		t.Errorf("%d jobs of lower-priority queues started between the first and the last critical job; want at most 4, the pool's size",
			early["heavy"]+early["light"])
	}
	// While both lower queues had jobs: weights 3 and 1.
	rest := got[lastCritical+1:]
	both := 0
	seen := count(got[:lastCritical+1])
	for i, q := range rest {
		seen[q]++
		if seen["heavy"] == n || seen["light"] == n {
			both = i + 1
			break
		}
	}
	share := count(rest[:both])
	if ratio := float64(share["heavy"]) / float64(max(share["light"], 1)); ratio < 2 || ratio > 4.5 {
		t.Errorf("heavy:light = %d:%d while both had jobs; want about 3:1 (their weights)", share["heavy"], share["light"])
	}
	if p := peak.Load(); p > 4 {
		t.Errorf("%d jobs ran at once in a pool of 4", p)
	}
}

// A paused queue starts none of its jobs, at any level, until resumed.
func TestPauseQueue(t *testing.T) {
	st := sqliteStore(t)
	var s starts
	c, err := jobs.NewClient(st, jobs.Config{Workers: reportWorkers(t, &s, 0), Logger: quiet,
		Queues: map[string]jobs.Queue{"reports": {Priorities: 2}, jobs.DefaultQueue: {}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.PauseQueue(ctx, "reports"); err != nil {
		t.Fatal(err)
	}
	if err := c.PauseQueue(ctx, "report"); err == nil || !strings.Contains(err.Error(), `no queue "report"`) {
		t.Errorf("pause of an unknown queue: %v", err)
	}
	for i := range 5 {
		insert(t, st, c, Digest{Tag: "p1", N: i}, &jobs.InsertOpts{Queue: "reports"})
		insert(t, st, c, Digest{Tag: "p2", N: i}, &jobs.InsertOpts{Queue: "reports", Priority: 2})
	}
	insert(t, st, c, Digest{Tag: "default"}, nil)
	start(t, c)
	waitFor(t, "the default queue's job", func() bool { return len(s.snapshot()) == 1 })
	time.Sleep(1500 * time.Millisecond)
	if got := s.snapshot(); len(got) != 1 {
		t.Fatalf("jobs of a paused queue ran: %v", got)
	}
	if err := c.ResumeQueue(ctx, "reports"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resumed queue's jobs", func() bool { return len(s.snapshot()) == 11 })
}

// Bad priority settings are errors at NewClient or at insert.
func TestPriorityErrors(t *testing.T) {
	st := sqliteStore(t)
	workers := reportWorkers(t, &starts{}, 0)
	for _, tc := range []struct {
		cfg  jobs.Config
		want string
	}{
		{jobs.Config{Queues: map[string]jobs.Queue{"a/b": {}}}, `queue "a/b": a queue name cannot hold '/'`},
		{jobs.Config{Queues: map[string]jobs.Queue{"a": {Pool: "nope"}}}, `queue "a" names pool "nope", which is not in Config.Pools`},
		{jobs.Config{Queues: map[string]jobs.Queue{"a": {Priorities: -1}}}, `Priorities must be 1 to 1000`},
	} {
		tc.cfg.Workers, tc.cfg.Logger = workers, quiet
		if _, err := jobs.NewClient(st, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClient: %v, want %q", err, tc.want)
		}
	}
	c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Queues: map[string]jobs.Queue{"a": {Priorities: 3}}})
	_, err := c.Insert(context.Background(), mustBegin(t, st), Digest{}, &jobs.InsertOpts{Queue: "a", Priority: 4})
	if err == nil || !strings.Contains(err.Error(), `priority 4 in queue "a": the queue's priorities are 1 (first) to 3`) {
		t.Errorf("insert at priority 4: %v", err)
	}
}
