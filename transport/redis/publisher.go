package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
)

// ErrNoReceivers is wrapped by the error of a Pub/Sub Publish that no
// subscriber received, when PublisherOptions.RequireReceivers is set. It
// is transient: the relay retries until a subscriber listens.
var ErrNoReceivers = errors.New("redis: no subscriber received the message")

// Publisher publishes messages to Redis streams (XADD) or Pub/Sub channels
// (PUBLISH), as its Mode says. It is safe for concurrent use: concurrent
// Publish calls are sent together as pipelines, so many goroutines
// publishing at once cost few round trips.
type Publisher struct {
	opts   PublisherOptions
	client *goredis.Client
	enc    encoder
	log    *slog.Logger

	queue chan *request
	quit  chan struct{}
	wg    sync.WaitGroup // the pipeline loops

	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup // Publish calls under way
}

var (
	_ transport.Publisher = (*Publisher)(nil)
	_ transport.Checker   = (*Publisher)(nil)
)

// request is one Publish call waiting for a pipeline.
type request struct {
	ctx  context.Context
	dest string
	id   string
	args []any // the command: XADD ... or PUBLISH ...
	done chan error
}

// NewPublisher returns a publisher configured by opts. It fails only on
// invalid options: it connects when it first publishes, and reconnects
// whenever a connection breaks, so it can be made while Redis is down.
func NewPublisher(opts PublisherOptions) (*Publisher, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	co, err := clientOptions(opts.Addr, opts.TLS)
	if err != nil {
		return nil, err
	}
	if co.PoolSize == 0 {
		co.PoolSize = opts.Pipelines + 4 // the pipelines, and Check
	}
	p := &Publisher{
		opts:   opts,
		client: goredis.NewClient(co),
		enc:    newEncoder(opts.Format, opts.Source),
		log:    opts.Logger.With("transport", "redis", "mode", opts.Mode.String()),
		queue:  make(chan *request, opts.Pipelines*opts.MaxBatch),
		quit:   make(chan struct{}),
	}
	for range opts.Pipelines {
		p.wg.Go(p.pipeline)
	}
	return p, nil
}

// Publish sends m to dest: a stream key in Streams mode, a channel in
// PubSub mode. In Streams mode it returns nil once Redis has appended the
// entry (durable as far as the server's persistence settings make it: see
// the package documentation); in PubSub mode once Redis has accepted the
// PUBLISH, whether or not anyone received it (see RequireReceivers).
//
// A key that holds something other than a stream, a message larger than
// MaxMessageBytes, an invalid dest and a command the server's ACL forbids
// are refused with a *transport.RejectedError. Every other error,
// including an unreachable server and a server out of memory
// (maxmemory), is transient: publishing it again can succeed.
func (p *Publisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	return p.publish(ctx, dest, m, p.opts.MaxLen)
}

// RouteOptions are the settings a route may give differently from its
// publisher's. Zero fields take the publisher's.
type RouteOptions struct {
	// MaxLen replaces PublisherOptions.MaxLen for the route's streams:
	// each stream can keep as much as its consumers may fall behind.
	MaxLen int64
}

// Route returns a publisher for one route: it publishes through p, on
// p's connection and in its pipeline, with o's settings in place of p's.
// Its Close does nothing; closing p closes the connection they share.
func (p *Publisher) Route(o RouteOptions) (transport.Publisher, error) {
	switch {
	case o.MaxLen < 0:
		return nil, fmt.Errorf("redis: RouteOptions.MaxLen is %d: it cannot be negative (zero takes the publisher's)", o.MaxLen)
	case o.MaxLen > 0 && p.opts.Mode == PubSub:
		return nil, errors.New("redis: RouteOptions.MaxLen trims streams, and the publisher is in Pub/Sub mode, which keeps nothing to trim")
	}
	r := &routePublisher{p: p, maxLen: p.opts.MaxLen}
	if o.MaxLen > 0 {
		r.maxLen = o.MaxLen
	}
	return r, nil
}

// routePublisher is a Publisher with its own settings, made by
// Publisher.Route.
type routePublisher struct {
	p      *Publisher
	maxLen int64
}

func (r *routePublisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	return r.p.publish(ctx, dest, m, r.maxLen)
}

func (r *routePublisher) Check(ctx context.Context, dest string) error { return r.p.Check(ctx, dest) }

// Close does nothing: the route's publisher owns the connection.
func (r *routePublisher) Close() error { return nil }

// publish is Publish with maxLen trimming streams.
func (p *Publisher) publish(ctx context.Context, dest string, m *transport.Message, maxLen int64) error {
	if err := checkName("destination", dest); err != nil {
		return p.rejected(dest, m.ID, err.Error(), "fix the route's destination", nil)
	}
	args, size, err := p.command(dest, m, maxLen)
	if err != nil {
		return p.rejected(dest, m.ID, err.Error(), "give every header a non-empty name", nil)
	}
	if size > p.opts.MaxMessageBytes {
		return p.rejected(dest, m.ID,
			fmt.Sprintf("message is %d bytes, over MaxMessageBytes (%d)", size, p.opts.MaxMessageBytes),
			"send a reference to the data instead, or raise MaxMessageBytes (Redis takes at most its proto-max-bulk-len, 512 MiB by default)", nil)
	}

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return transport.ErrClosed
	}
	p.inflight.Add(1)
	p.mu.RUnlock()
	defer p.inflight.Done()

	r := &request{ctx: ctx, dest: dest, id: m.ID, args: args, done: make(chan error, 1)}
	select {
	case p.queue <- r:
	case <-ctx.Done():
		return fmt.Errorf("redis: publish message %s to %q: %w", m.ID, dest, ctx.Err())
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		// The command may still reach Redis: the relay publishes the
		// message again, and consumers see it twice (at least once).
		return fmt.Errorf("redis: publish message %s to %q: %w", m.ID, dest, ctx.Err())
	}
}

// command returns the Redis command that publishes m to dest and the
// message's size.
func (p *Publisher) command(dest string, m *transport.Message, maxLen int64) ([]any, int, error) {
	if p.opts.Mode == PubSub {
		env, err := p.enc.envelope(m)
		if err != nil {
			return nil, 0, err
		}
		return []any{"publish", dest, env}, len(env), nil
	}
	values, size, err := p.enc.streamValues(m)
	if err != nil {
		return nil, 0, err
	}
	args := make([]any, 0, 6+len(values))
	args = append(args, "xadd", dest)
	if maxLen > 0 {
		args = append(args, "maxlen", "~", maxLen)
	}
	args = append(args, "*")
	return append(args, values...), size, nil
}

// pipeline sends the queued requests, as many as are waiting (up to
// MaxBatch) in one round trip, until the publisher is closed.
func (p *Publisher) pipeline() {
	batch := make([]*request, 0, p.opts.MaxBatch)
	for {
		select {
		case r := <-p.queue:
			batch = append(batch[:0], r)
		case <-p.quit:
			return
		}
	fill:
		for len(batch) < p.opts.MaxBatch {
			select {
			case r := <-p.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		p.send(batch)
		clear(batch)
	}
}

// send runs batch as one pipeline and tells each caller its result.
func (p *Publisher) send(batch []*request) {
	pipe := p.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(batch))
	for i, r := range batch {
		if r.ctx.Err() != nil {
			continue // its caller has gone: do not publish what it gave up on
		}
		cmds[i] = pipe.Do(context.Background(), r.args...)
	}
	if pipe.Len() == 0 {
		return
	}
	// The callers' contexts bound how long they wait, not the pipeline:
	// go-redis's dial, read and write timeouts end a stuck round trip.
	_, _ = pipe.Exec(context.Background())
	for i, r := range batch {
		if cmds[i] == nil {
			continue
		}
		r.done <- p.result(r, cmds[i])
	}
}

// result turns a command's reply into Publish's error.
func (p *Publisher) result(r *request, cmd *goredis.Cmd) error {
	n, err := cmd.Result()
	if err != nil {
		return p.classify(r.dest, r.id, err)
	}
	if p.opts.Mode == PubSub && p.opts.RequireReceivers {
		if receivers, _ := n.(int64); receivers == 0 {
			return fmt.Errorf("redis: publish message %s to channel %q: %w", r.id, r.dest, ErrNoReceivers)
		}
	}
	return nil
}

// classify tells a refusal that publishing again cannot fix from a
// transient failure.
func (p *Publisher) classify(dest, id string, err error) error {
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "WRONGTYPE"):
			return p.rejected(dest, id, msg,
				fmt.Sprintf("the key %q exists and is not a stream: route the messages to another key, or delete the key if it is a leftover", dest), err)
		case strings.HasPrefix(msg, "NOPERM"):
			return p.rejected(dest, id, msg,
				fmt.Sprintf("the ACL user may not run %s on %q: grant it (ACL SETUSER ... +%s ~%s)", p.verb(), dest, p.verb(), dest), err)
		}
		// OOM (maxmemory), LOADING, READONLY (a failover), MASTERDOWN,
		// BUSY, MISCONF: the server may take the message later.
	}
	what := "stream"
	if p.opts.Mode == PubSub {
		what = "channel"
	}
	return fmt.Errorf("redis: publish message %s to %s %q: %w", id, what, dest, err)
}

func (p *Publisher) verb() string {
	if p.opts.Mode == PubSub {
		return "publish"
	}
	return "xadd"
}

func (p *Publisher) rejected(dest, id, reason, hint string, err error) error {
	return &transport.RejectedError{Transport: "redis", Dest: dest, MessageID: id, Reason: reason, Hint: hint, Err: err}
}

// Check reports whether dest can take messages: in Streams mode, that the
// key is a stream or does not exist yet (XADD creates it); a key of
// another type is a *transport.RejectedError. Pub/Sub channels always
// exist, so in PubSub mode Check only validates the name.
func (p *Publisher) Check(ctx context.Context, dest string) error {
	if err := checkName("destination", dest); err != nil {
		return p.rejected(dest, "", err.Error(), "fix the route's destination", nil)
	}
	if p.opts.Mode == PubSub {
		return nil
	}
	typ, err := p.client.Type(ctx, dest).Result()
	if err != nil {
		return fmt.Errorf("redis: check stream %q: %w", dest, err)
	}
	if typ != "none" && typ != "stream" {
		return p.rejected(dest, "", fmt.Sprintf("the key holds a %s, not a stream", typ),
			"route the messages to another key, or delete the key if it is a leftover", nil)
	}
	return nil
}

// Close stops accepting messages, waits for the Publish calls under way
// and closes the connections.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.inflight.Wait()
	close(p.quit)
	p.wg.Wait()
	return p.client.Close()
}
