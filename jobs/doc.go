// Package jobs is a background job queue on ferry's engine: typed jobs
// inserted in the caller's transaction, queues with their own
// concurrency, weights and rate limits, delays, unique jobs, retries with
// backoff, timeouts, and a dead state a person can retry from.
//
// A job is an outbox message whose destination is a worker in the same
// process: its kind is the message type, its arguments the JSON payload,
// its queue the lane. So a job inherits what the relay guarantees: it
// exists if and only if the inserting transaction commits; it runs at
// least once; jobs with the same key run one at a time across every
// process, in insert order (a concurrency limit of one per key); a
// process that dies loses its shard leases and its jobs run elsewhere;
// ferry inspect, list, retry and exclude operate jobs like any message.
//
//	type SendEmail struct{ To string `json:"to"` }
//	func (SendEmail) Kind() string { return "send_email" }
//
//	workers := jobs.NewWorkers()
//	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
//		return mailer.Send(ctx, job.Args.To)
//	})
//	client, err := jobs.NewClient(st, jobs.Config{Workers: workers,
//		Queues: map[string]jobs.Queue{"default": {Concurrency: 50}, "reports": {Concurrency: 2, Weight: 1}}})
//	client.Migrate(ctx) // the outbox table and the job tables beside it
//	go client.Run(ctx)
//
//	tx, _ := db.BeginTx(ctx, nil)
//	// ... the business change ...
//	client.Insert(ctx, tx, SendEmail{To: "ann@example.com"}, &jobs.InsertOpts{Unique: &jobs.Unique{ByArgs: true, Period: time.Hour}})
//	tx.Commit()
//
// Errors: a worker's error runs the job again after a backoff until the
// queue's MaxAttempts, then the job is dead (FAILED) with its last error;
// a kind can have its own limit and retry policy (AddWorker options
// MaxAttempts, RetryWith). NoRetry(err) kills it at once; Snooze(d) runs
// it again after d without spending an attempt. Arguments that do not
// decode kill the job with the decode error. A job past its Timeout has
// its context cancelled; one that ignores that and goes on running is
// reported in the logs, since Go cannot stop it. Inserting a kind no
// worker knows, into a queue the client does not run, or at a priority
// the queue does not have is an error at insert, and nothing is inserted.
//
// Choosing what runs: each queue has its own workers (Concurrency), or
// shares a pool of them with other queues (Config.Pools, Queue.Pool): a
// free worker of a pool goes to the queue of lowest Queue.Priority that
// has a job ready (strict), and between queues of equal Priority by
// Weight (weighted, so none starves). Within a queue, jobs have priority
// levels (Queue.Priorities, InsertOpts.Priority, 1 first). PauseQueue and
// ResumeQueue (or ferry pause/resume QUEUE) stop and restart a queue in
// every process.
//
// Keys: jobs with the same InsertOpts.Key run at most Queue.KeyConcurrency
// at once (default 1, which also keeps their insert order) across every
// process, and start at most Queue.KeyRate per second; a job held back by
// the rate waits without spending an attempt. Unique jobs (InsertOpts.
// Unique) are unique by arguments, by a key, within a period, and among
// the states Unique.States lists.
//
// Results: a worker can leave a small output (Job.SetOutput), stored
// when it returns nil and before the job is marked completed, and report
// progress while it runs (Job.Progress), stored at once. Each failed
// attempt's error is kept with its attempt number and time, whatever
// failed it (an error, a panic, a timeout, arguments that do not decode);
// the outbox row keeps only the last. Client.Job reads all of it, with
// the job's state, from any process (Lookup without a client; ferry jobs
// show from a shell). It lives in two tables beside the jobs' table T:
// T_results and T_errors, which Client.Migrate (or ferry migrate --jobs)
// creates. Their rows go when their job does: every minute, Run deletes
// in batches those of jobs the relay's retention deleted. Client.Retry runs
// a dead job again with a fresh budget; Client.Discard gives up on a dead
// or waiting one.
//
// Periodic jobs (Config.Periodic) are inserted on cron schedules, once
// per tick across processes. Client.Handler is an HTTP endpoint that
// inserts jobs for services in other languages; InsertJSON inserts one
// without a client, for tools (ferry jobs enqueue). Client.Cancel cancels
// a waiting or running job from any process.
//
// Not built: a job's process that dies rescues the job without counting
// an attempt, so a job that kills its process each time is never dead;
// River-style per-job uniqueness keys outside the id; a running job is
// WAITING in the outbox, so "running" is not a state Client.Job can tell.
package jobs
