package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry"
)

// Topic is the outbox topic of every job; the job's kind is its message
// type, its queue the message's lane.
const Topic = "ferry.jobs"

// DefaultQueue is the queue of a job inserted without one.
const DefaultQueue = ferry.DefaultLane

// Args are a job's arguments: a struct that encodes to JSON, whose Kind
// names the job and picks its worker. Kinds are part of the stored data:
// renaming one strands the jobs already inserted under the old name.
type Args interface {
	Kind() string
}

// Job is a job as its worker receives it.
type Job[A Args] struct {
	ID    string
	Args  A
	Queue string
	// Priority is the job's level in its queue, 1 first.
	Priority int
	// Key serializes jobs: jobs with the same key run one at a time, in
	// insert order, across every process. Empty means none.
	Key string
	// Attempt counts the tries, from 1.
	Attempt    int
	InsertedAt time.Time

	run *attempt // for SetOutput and Progress; nil in a Job built by hand
}

// InsertOpts are the options of one insert; the zero value inserts into
// DefaultQueue to run at once.
type InsertOpts struct {
	// Queue is the queue (a lane of the relay) the job waits in.
	Queue string
	// Priority is the job's level in its queue: 1 (the default) runs
	// first, then 2, up to the queue's Queue.Priorities.
	Priority int
	// ScheduledAt delays the job; zero runs it at once.
	ScheduledAt time.Time
	// Key, if set, makes jobs with the same key run one at a time, in
	// insert order, across processes: a concurrency limit of one per key.
	Key string
	// Unique, if set, makes an insert that matches a job already there a
	// no-op.
	Unique *Unique
}

// Unique says when two inserts are the same job. The first insert wins;
// the later ones return its id and insert nothing. By default a job stays
// there for uniqueness until the relay's retention removes it after it is
// done; States narrows that.
type Unique struct {
	// ByArgs: jobs of the same kind and the same arguments (as JSON) are
	// the same job.
	ByArgs bool
	// Key: jobs of the same kind and this key are the same job (with
	// ByArgs, both must match).
	Key string
	// Period: only jobs inserted within the same period (aligned to the
	// Unix epoch: the same hour for time.Hour) are the same job, so a job
	// unique per hour can run again the next hour.
	Period time.Duration
	// States, if set, are the states in which an earlier job blocks a new
	// insert; an earlier job in another state steps aside (it keeps its
	// history under the id "<id>~<random>") and the new job takes the
	// id. For example {ferry.StatusWaiting} allows one pending job at a
	// time (waiting, scheduled, retrying or running: the outbox does not
	// tell them apart), and a new one as soon as it completed, died or
	// was cancelled. Nil means every state.
	States []ferry.Status
}

// InsertParams is one job of a bulk insert.
type InsertParams struct {
	Args Args
	Opts *InsertOpts
}

// UnknownKindError is the error of an insert whose kind has no worker in
// the client's Workers: nothing would ever run it.
type UnknownKindError struct {
	Kind string
}

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("jobs: no worker for job kind %q: register one with jobs.AddWorker before inserting (or insert with a client whose Workers know it)", e.Kind)
}

// message turns a job into the outbox message that carries it.
// levels is the queue's number of priority levels, 0 if unknown.
func message(args Args, opts *InsertOpts, levels int, now time.Time) (ferry.Message, error) {
	if args == nil {
		return ferry.Message{}, errors.New("jobs: insert of nil args")
	}
	kind := args.Kind()
	if kind == "" {
		return ferry.Message{}, fmt.Errorf("jobs: %T.Kind() is empty: a job kind names the job and picks its worker", args)
	}
	payload, err := json.Marshal(args)
	if err != nil {
		return ferry.Message{}, fmt.Errorf("jobs: encode the arguments of a %q job: %w", kind, err)
	}
	return rawMessage(kind, payload, opts, levels, now)
}

// rawMessage is message with the arguments already encoded.
func rawMessage(kind string, payload []byte, opts *InsertOpts, levels int, now time.Time) (ferry.Message, error) {
	if opts == nil {
		opts = &InsertOpts{}
	}
	lane, err := priorityLane(queueName(opts.Queue), opts.Priority, levels)
	if err != nil {
		return ferry.Message{}, err
	}
	m := ferry.Message{Lane: lane, Topic: Topic, Key: opts.Key, Type: kind, Payload: payload, DeliverAt: opts.ScheduledAt}
	if u := opts.Unique; u != nil {
		if !u.ByArgs && u.Key == "" {
			return ferry.Message{}, fmt.Errorf("jobs: %q job: Unique needs ByArgs or a Key, or leave it nil", kind)
		}
		for _, s := range u.States {
			if !s.Valid() {
				return ferry.Message{}, fmt.Errorf("jobs: %q job: Unique.States: %q is not a state; use ferry.StatusWaiting, StatusDone, StatusFailed or StatusExcluded", kind, s)
			}
		}
		h := sha256.New()
		h.Write([]byte(kind))
		h.Write([]byte{0})
		if u.ByArgs {
			canon, err := canonical(payload)
			if err != nil {
				return ferry.Message{}, fmt.Errorf("jobs: %q job: the arguments are not JSON: %w", kind, err)
			}
			h.Write(canon)
		}
		h.Write([]byte{0})
		h.Write([]byte(u.Key))
		if u.Period > 0 {
			h.Write([]byte{0})
			h.Write(strconv.AppendInt(nil, now.UnixNano()/int64(u.Period), 10))
		}
		// The id is the uniqueness: the outbox skips an id it has.
		m.ID = "unique:" + kind + ":" + hex.EncodeToString(h.Sum(nil)[:16])
	}
	return m, nil
}

// canonical re-encodes JSON with object keys sorted and no spaces, so
// that the same arguments are the same bytes whether a Go struct or
// another language wrote them.
func canonical(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// InsertJSON adds a job of kind with arguments already in JSON (an object)
// in the caller's transaction, without a client: for tools such as ferry
// jobs enqueue, which do not have the workers. Nothing checks that a
// worker knows kind or that the queue is run: such a job waits until a
// client with that worker runs that queue. A unique job's id is the same
// as a Go insert of the same arguments would give.
func InsertJSON(ctx context.Context, tx *sql.Tx, st ferry.Store, kind string, args []byte, opts *InsertOpts) (string, error) {
	if kind == "" {
		return "", errors.New("jobs: the job kind is empty: it names the job and picks its worker")
	}
	if trimmed := bytes.TrimSpace(args); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return "", fmt.Errorf("jobs: the arguments of a %q job must be a JSON object, such as {\"to\": \"ann@example.com\"}", kind)
	}
	m, err := rawMessage(kind, bytes.TrimSpace(args), opts, 0, time.Now())
	if err != nil {
		return "", err
	}
	if m.ID == "" {
		m.ID = ferry.NewID()
	}
	if err := freeUniqueIDs(ctx, st, sqlTx{tx}, []ferry.Message{m}, []InsertParams{{Opts: opts}}); err != nil {
		return "", err
	}
	if err := ferry.NewOutbox(st).Write(ctx, tx, m); err != nil {
		return "", err
	}
	return m.ID, nil
}

// Insert adds a job in the caller's transaction: it exists, and will
// run, if and only if tx commits. It returns the job's id (for a unique
// job that was there already, the existing job's).
func (c *Client) Insert(ctx context.Context, tx *sql.Tx, args Args, opts *InsertOpts) (string, error) {
	msgs, err := c.messages([]InsertParams{{Args: args, Opts: opts}})
	if err != nil {
		return "", err
	}
	if err := freeUniqueIDs(ctx, c.store, sqlTx{tx}, msgs, []InsertParams{{Args: args, Opts: opts}}); err != nil {
		return "", err
	}
	if err := c.outbox.Write(ctx, tx, msgs...); err != nil {
		return "", err
	}
	return msgs[0].ID, nil
}

// InsertPgx is Insert in a pgx transaction.
func (c *Client) InsertPgx(ctx context.Context, tx pgx.Tx, args Args, opts *InsertOpts) (string, error) {
	msgs, err := c.messages([]InsertParams{{Args: args, Opts: opts}})
	if err != nil {
		return "", err
	}
	if err := freeUniqueIDs(ctx, c.store, pgxTx{tx}, msgs, []InsertParams{{Args: args, Opts: opts}}); err != nil {
		return "", err
	}
	if err := c.outbox.WritePgx(ctx, tx, msgs...); err != nil {
		return "", err
	}
	return msgs[0].ID, nil
}

// InsertMany adds jobs in bulk in the caller's transaction (PostgreSQL
// COPY or multi-row INSERTs), returning their ids in order. Nothing is
// inserted if one of them is invalid.
func (c *Client) InsertMany(ctx context.Context, tx *sql.Tx, params []InsertParams) ([]string, error) {
	msgs, err := c.messages(params)
	if err != nil {
		return nil, err
	}
	if err := freeUniqueIDs(ctx, c.store, sqlTx{tx}, msgs, params); err != nil {
		return nil, err
	}
	if err := c.outbox.Write(ctx, tx, msgs...); err != nil {
		return nil, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids, nil
}

// messages checks and encodes params.
func (c *Client) messages(params []InsertParams) ([]ferry.Message, error) {
	now := time.Now()
	msgs := make([]ferry.Message, len(params))
	for i, p := range params {
		var levels int
		if p.Opts != nil {
			levels = c.queues[queueName(p.Opts.Queue)].Priorities
		} else {
			levels = 1
		}
		m, err := message(p.Args, p.Opts, levels, now)
		if err == nil && !c.workers.has(m.Type) {
			err = &UnknownKindError{Kind: m.Type}
		}
		if err != nil {
			if len(params) > 1 {
				err = fmt.Errorf("job %d of %d: %w", i+1, len(params), err)
			}
			return nil, err
		}
		if m.ID == "" {
			m.ID = ferry.NewID() // returned to the caller
		}
		if n := c.queues[queueOf(m.Lane)].KeyConcurrency; m.Key != "" && n > 1 {
			m.Headers = map[string]string{keyHeader: m.Key}
			m.Key = relayKey(m.Key, n)
		}
		msgs[i] = m
	}
	return msgs, nil
}
