package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// transportName names this transport in errors.
const transportName = "nats"

// cePrefix is the prefix of CloudEvents attributes in the NATS protocol
// binding.
const cePrefix = "ce-"

// lookupTimeout bounds the question "which stream holds this subject?"
// asked when a publish finds no stream, so that the answer comes even when
// the caller's context has no deadline.
const lookupTimeout = 5 * time.Second

// Publisher publishes messages to JetStream subjects. It implements
// transport.Publisher and transport.Checker. Concurrent calls to Publish
// are pipelined on one connection: each sends its message at once and
// waits for its own acknowledgement, so throughput grows with the number
// of callers up to MaxPending messages in flight.
type Publisher struct {
	nc      *conn
	js      jetstream.JetStream
	enc     transport.Encoding
	streams *streamSetup
	log     *slog.Logger
	acks    *ackWaiters

	life context.Context    // ends at Close
	stop context.CancelFunc // ends life

	mu       sync.RWMutex // guards closed against inflight.Add
	closed   bool
	inflight sync.WaitGroup
}

var (
	_ transport.Publisher = (*Publisher)(nil)
	_ transport.Checker   = (*Publisher)(nil)
)

// NewPublisher returns a publisher to the NATS servers at url (one URL or
// a comma-separated list, such as nats://127.0.0.1:4222). It does not
// wait for the server: while it is unreachable, Publish waits for it
// within its context, and the configured streams are created once it
// answers. It fails only on invalid options.
func NewPublisher(url string, o PublisherOptions) (*Publisher, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("nats: publisher options: %w", err)
	}
	o = o.withDefaults()
	nc, err := connect(url, o.ConnOptions)
	if err != nil {
		return nil, err
	}
	acks := &ackWaiters{}
	js, err := jetstream.New(nc.Conn,
		jetstream.WithPublishAsyncMaxPending(o.MaxPending),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout),
		jetstream.WithPublishAsyncAckHandler(acks.acked),
		jetstream.WithPublishAsyncErrHandler(acks.failed),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	log := o.Logger.With("transport", transportName)
	ctx, stop := context.WithCancel(context.Background())
	p := &Publisher{
		nc:      nc,
		js:      js,
		enc:     transport.Encoding{Format: o.Format, CEPrefix: cePrefix, Source: o.Source},
		streams: newStreamSetup(js, o.Streams, log),
		log:     log,
		acks:    acks,
		life:    ctx,
		stop:    stop,
	}
	go p.streams.run(ctx)
	return p, nil
}

// Publish sends m to the subject dest and returns once the stream that
// holds dest has stored it. The message's id goes in the Nats-Msg-Id
// header, so the stream drops a retry of a message it already has (within
// its duplicate window). A subject that no stream holds, a message larger
// than the server or the stream accepts, and a header name or value NATS
// cannot carry are refused with *transport.RejectedError.
func (p *Publisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return transport.ErrClosed
	}
	p.inflight.Add(1)
	p.mu.RUnlock()
	defer p.inflight.Done()

	if problem := checkSubject(dest, false); problem != "" {
		return p.rejected(dest, m, problem, "publish to a literal subject such as orders.created", nil)
	}
	msg, err := p.message(dest, m)
	if err != nil {
		return err
	}
	if err := p.ensureStreams(ctx); err != nil {
		return fmt.Errorf("nats: publish message %s to %q: streams not ready: %w", m.ID, dest, p.nc.explain(err))
	}
	for {
		done, err := p.send(ctx, msg)
		if err != nil {
			return p.publishError(dest, m, err)
		}
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
			if errors.Is(err, nats.ErrDisconnected) && ctx.Err() == nil {
				// The connection dropped before the acknowledgement came.
				// Send again: the client holds what is published while it
				// reconnects, and if the server stored the first copy, the
				// stream drops this one as a duplicate. Order holds, since
				// the caller waits for this message before its key's next.
				sleep(ctx, 25*time.Millisecond)
				continue
			}
			return p.publishError(dest, m, err)
		case <-ctx.Done():
			// The message may still be stored; the relay's retry will then
			// be a duplicate the stream drops. The client forgets it at
			// AckTimeout at the latest.
			p.acks.forget(msg)
			return fmt.Errorf("nats: publish message %s to %q: no acknowledgement yet: %w", m.ID, dest, ctx.Err())
		}
	}
}

// ackWaiters hands the client's acknowledgements and errors to the Publish
// calls that wait for them. It is the client's callbacks, rather than a
// future's channels per message, because each of those takes the client's
// lock that every publish and acknowledgement contend for.
type ackWaiters struct {
	mu sync.Mutex
	m  map[*nats.Msg]chan error // each buffered, 1
}

func (w *ackWaiters) wait(msg *nats.Msg) <-chan error {
	done := make(chan error, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[*nats.Msg]chan error)
	}
	w.m[msg] = done
	w.mu.Unlock()
	return done
}

func (w *ackWaiters) forget(msg *nats.Msg) {
	w.mu.Lock()
	delete(w.m, msg)
	w.mu.Unlock()
}

func (w *ackWaiters) settle(msg *nats.Msg, err error) {
	w.mu.Lock()
	done, ok := w.m[msg]
	delete(w.m, msg)
	w.mu.Unlock()
	if ok {
		done <- err
	}
}

func (w *ackWaiters) acked(_ jetstream.JetStream, msg *nats.Msg, _ *jetstream.PubAck) {
	w.settle(msg, nil)
}

func (w *ackWaiters) failed(_ jetstream.JetStream, msg *nats.Msg, err error) {
	w.settle(msg, err)
}

// ensureStreams waits for the configured streams until ctx ends or the
// publisher closes, so that Close does not wait for a server that is down.
func (p *Publisher) ensureStreams(ctx context.Context) error {
	if p.streams.done.Load() {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.life, cancel)
	defer stop()
	return p.streams.ensure(ctx)
}

// message builds the NATS message for m, checking its headers.
func (p *Publisher) message(dest string, m *transport.Message) (*nats.Msg, error) {
	msg := &nats.Msg{Subject: dest, Data: m.Payload, Header: make(nats.Header, len(m.Headers)+6)}
	var problem string
	p.enc.Headers(m, func(name, value string) {
		if problem != "" {
			return
		}
		if problem = checkHeaderName(name); problem == "" {
			problem = checkHeaderValue(name, value)
		}
		msg.Header[name] = []string{value}
	})
	if problem != "" {
		return nil, p.rejected(dest, m, problem, "rename or remove the header in the producer", nil)
	}
	if m.ID != "" {
		msg.Header[jetstream.MsgIDHeader] = []string{m.ID}
	}
	return msg, nil
}

// send hands msg to the client, waiting for room while MaxPending
// messages are in flight, and returns where its outcome will come.
func (p *Publisher) send(ctx context.Context, msg *nats.Msg) (<-chan error, error) {
	for {
		// Wait before sending: the acknowledgement may come before
		// PublishMsgAsync returns.
		done := p.acks.wait(msg)
		_, err := p.js.PublishMsgAsync(msg)
		if err == nil {
			return done, nil
		}
		p.acks.forget(msg)
		switch {
		case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
			// The client waited its stall time in vain: go on waiting as
			// long as the caller does.
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w while %d messages wait for acknowledgements", err, p.js.PublishAsyncPending())
			}
		case errors.Is(err, nats.ErrHeadersNotSupported) && !p.nc.IsConnected():
			// The client has never reached a server, so it does not know
			// yet that the server takes headers: wait for it.
			if !sleep(ctx, 25*time.Millisecond) {
				return nil, fmt.Errorf("not connected to the server yet: %w", ctx.Err())
			}
		default:
			return nil, err
		}
	}
}

// publishError turns what the client or server said about a message into
// the error Publish returns: *transport.RejectedError for what will not
// change on a retry, a plain error for the rest.
func (p *Publisher) publishError(dest string, m *transport.Message, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return p.rejected(dest, m, fmt.Sprintf("the message (%d bytes of payload) is larger than the server's max_payload of %d bytes", len(m.Payload), p.nc.MaxPayload()),
			"send a reference to the data instead, or raise max_payload in the server's configuration", err)
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		if rej := p.noStream(dest, m, err); rej != nil {
			return rej
		}
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return p.rejected(dest, m, apiErr.Description, "send a reference to the data instead, or raise the stream's max message size (Stream.MaxMsgSize)", err)
	case errors.Is(err, nats.ErrBadHeaderMsg):
		return p.rejected(dest, m, "a header cannot be encoded", "check the message's header names", err)
	case errors.Is(err, nats.ErrConnectionClosed):
		p.mu.RLock()
		closed := p.closed
		p.mu.RUnlock()
		if closed {
			return transport.ErrClosed
		}
	}
	return fmt.Errorf("nats: publish message %s to %q: %w", m.ID, dest, p.nc.explain(err))
}

// noStream returns the refusal of a message whose subject no stream
// holds, or nil if a stream holds it after all (a stream being created,
// or a leader being elected) or the server cannot tell right now.
func (p *Publisher) noStream(dest string, m *transport.Message, err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	_, lookupErr := p.js.StreamNameBySubject(ctx, dest)
	if !errors.Is(lookupErr, jetstream.ErrStreamNotFound) {
		return nil
	}
	hint := "add the subject to a stream's subjects (PublisherOptions.Streams, or nats stream add/edit)"
	if refusal := p.streams.refusal(); refusal != nil {
		hint += "; note that " + refusal.Error()
	}
	return p.rejected(dest, m, fmt.Sprintf("no stream matches subject %q", dest), hint, err)
}

func (p *Publisher) rejected(dest string, m *transport.Message, reason, hint string, err error) error {
	return &transport.RejectedError{Transport: transportName, Dest: dest, MessageID: m.ID, Reason: reason, Hint: hint, Err: err}
}

// Check reports whether a stream holds the subject dest, so that a route
// to a subject no stream stores fails when the relay starts. It waits
// for the configured streams to be created first.
func (p *Publisher) Check(ctx context.Context, dest string) error {
	if problem := checkSubject(dest, false); problem != "" {
		return &transport.RejectedError{Transport: "nats", Dest: dest, Reason: problem}
	}
	if err := p.ensureStreams(ctx); err != nil {
		return fmt.Errorf("nats: check %q: %w", dest, err)
	}
	if err := p.streams.refusal(); err != nil {
		return err
	}
	name, err := p.js.StreamNameBySubject(ctx, dest)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return &transport.RejectedError{Transport: "nats", Dest: dest, Reason: "no stream matches the subject",
			Hint: "add it to a stream's subjects (PublisherOptions.Streams, or nats stream add/edit)", Err: err}
	}
	if err != nil {
		return fmt.Errorf("nats: check %q: %w", dest, err)
	}
	p.log.Debug("nats: destination checked", "subject", dest, "stream", name)
	return nil
}

// Close waits for the Publish calls in flight to return and closes the
// connection. Publish after Close returns transport.ErrClosed.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.stop()
	// Every call in flight ends: acknowledged, refused, timed out at
	// AckTimeout, or ended by its context.
	p.inflight.Wait()
	p.nc.Close()
	return nil
}
