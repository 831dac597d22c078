package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// Dialing defaults, shared by both sides.
const (
	defaultDialTimeout       = 5 * time.Second
	defaultHeartbeat         = 10 * time.Second
	defaultMinReconnectDelay = 100 * time.Millisecond
	defaultMaxReconnectDelay = 5 * time.Second
)

// dialOptions are the connection settings of either side.
type dialOptions struct {
	url         string
	name        string // the connection name the management UI shows
	dialTimeout time.Duration
	heartbeat   time.Duration
	minDelay    time.Duration
	maxDelay    time.Duration
	log         *slog.Logger
	tls         *tls.Config // for amqps:// URLs
	// setup runs on each new connection before it is handed out (declares
	// exchanges). Its error is logged, not fatal: the connection works for
	// everything else.
	setup func(*amqp091.Connection) error
}

// connector keeps one connection to the broker: it dials in the
// background from the start, hands the connection out while it is up and
// dials again, with backoff, when it is lost. Nothing waits on it while
// the broker is down except callers of get, who wait no longer than their
// context.
type connector struct {
	opts    dialOptions
	display string // the URL without its password, for errors and logs

	mu      sync.Mutex
	conn    *amqp091.Connection // nil while down
	lastErr error               // why conn is nil, after a failed attempt
	tried   bool                // one attempt has finished
	changed chan struct{}       // closed and replaced when the fields above change

	ctx      context.Context // ends at close, cancelling a dial under way
	cancel   context.CancelFunc
	done     chan struct{} // closed when run returns
	stopping chan struct{} // closed by shutdown
	stopOnce sync.Once

	// blocked is the reason the broker gave for blocking publishers
	// (connection.blocked: a memory or disk alarm), nil while it does not.
	blocked atomic.Pointer[string]
}

func newConnector(opts dialOptions) *connector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &connector{
		opts:     opts,
		display:  redact(opts.url),
		changed:  make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		stopping: make(chan struct{}),
	}
	go c.run()
	return c
}

// redact returns u without its password.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "xxxxx")
	}
	return p.String()
}

func (c *connector) run() {
	defer close(c.done)
	delay := c.opts.minDelay
	failures := 0
	for {
		conn, err := c.dial()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			failures++
			// The first failure and then every tenth say so: a broker that
			// stays down for an hour should not flood the log.
			if failures == 1 || failures%10 == 0 {
				c.opts.log.Warn("amqp: cannot connect; retrying", "url", c.display, "attempts", failures, "retry_in", delay, "err", err)
			}
			c.set(nil, fmt.Errorf("connect to %s: %w", c.display, err))
			select {
			case <-time.After(delay):
			case <-c.ctx.Done():
				return
			}
			delay = min(2*delay, c.opts.maxDelay)
			continue
		}
		if failures > 0 {
			c.opts.log.Info("amqp: connected", "url", c.display, "after_attempts", failures+1)
		}
		failures = 0
		connected := time.Now()
		closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
		blocks := conn.NotifyBlocked(make(chan amqp091.Blocking, 4))
		if c.opts.setup != nil {
			if err := c.opts.setup(conn); err != nil {
				c.opts.log.Error("amqp: setting up the connection", "url", c.display, "err", err)
			}
		}
		c.set(conn, nil)
		if !c.watch(conn, closed, blocks) {
			return
		}
		// A connection that the broker closes as soon as it opens (a
		// declaration it takes as a connection error, a broker shutting
		// down) is redialled with backoff too, not in a tight loop.
		if time.Since(connected) > c.opts.maxDelay {
			delay = c.opts.minDelay
			continue
		}
		select {
		case <-time.After(delay):
		case <-c.ctx.Done():
			return
		}
		delay = min(2*delay, c.opts.maxDelay)
	}
}

// watch follows conn until it closes (true) or the connector does
// (false), keeping note of the broker blocking publishers.
func (c *connector) watch(conn *amqp091.Connection, closed <-chan *amqp091.Error, blocks <-chan amqp091.Blocking) bool {
	defer c.blocked.Store(nil)
	for {
		select {
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			if b.Active {
				c.opts.log.Warn("amqp: the broker blocks publishing", "url", c.display, "reason", b.Reason)
				reason := b.Reason
				c.blocked.Store(&reason)
			} else {
				c.opts.log.Info("amqp: the broker accepts publishing again", "url", c.display)
				c.blocked.Store(nil)
			}
		case err := <-closed:
			c.opts.log.Warn("amqp: connection lost; reconnecting", "url", c.display, "err", err)
			lost := error(amqp091.ErrClosed)
			if err != nil {
				lost = err
			}
			c.set(nil, fmt.Errorf("connection to %s lost: %w", c.display, lost))
			return true
		case <-c.ctx.Done():
			c.set(nil, nil)
			// A broker that stopped answering must not hold Close up.
			conn.CloseDeadline(time.Now().Add(c.opts.dialTimeout))
			return false
		}
	}
}

// blockedReason returns why the broker blocks publishers (a memory or
// disk alarm), or "" if it does not.
func (c *connector) blockedReason() string {
	if r := c.blocked.Load(); r != nil {
		return *r
	}
	return ""
}

func (c *connector) dial() (*amqp091.Connection, error) {
	props := amqp091.NewConnectionProperties()
	props.SetClientConnectionName(c.opts.name)
	return amqp091.DialConfig(c.opts.url, amqp091.Config{
		Heartbeat:       c.opts.heartbeat,
		Properties:      props,
		TLSClientConfig: c.opts.tls.Clone(), // the client sets its ServerName
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: c.opts.dialTimeout}
			conn, err := d.DialContext(c.ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bound the handshake: heartbeats start only after it, and a
			// half-open broker would otherwise hold the dial for good. The
			// client clears the deadline once the connection is open.
			if err := conn.SetDeadline(time.Now().Add(c.opts.dialTimeout)); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
	})
}

func (c *connector) set(conn *amqp091.Connection, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn, c.lastErr, c.tried = conn, err, true
	close(c.changed)
	c.changed = make(chan struct{})
}

// errClosing is what callers waiting for a connection get at close.
var errClosing = errors.New("closing")

// get returns the connection, waiting for one while the broker is down
// until ctx ends.
func (c *connector) get(ctx context.Context) (*amqp091.Connection, error) {
	for {
		c.mu.Lock()
		conn, lastErr, changed := c.conn, c.lastErr, c.changed
		c.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		select {
		case <-changed:
		case <-c.stopping:
			return nil, errClosing
		case <-c.ctx.Done():
			return nil, errClosing
		case <-ctx.Done():
			return nil, notConnected(lastErr, c.display, ctx.Err())
		}
	}
}

// notConnected is the error of a wait for the connection that ctxErr cut
// short.
func notConnected(lastErr error, display string, ctxErr error) error {
	if lastErr == nil {
		return fmt.Errorf("not connected to %s yet: %w", display, ctxErr)
	}
	return fmt.Errorf("not connected (%v): %w", lastErr, ctxErr)
}

// waitError describes why a wait that ctx cut short did not finish: the
// broker being away, if it is.
func (c *connector) waitError(ctx context.Context) error {
	c.mu.Lock()
	conn, lastErr := c.conn, c.lastErr
	c.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		return notConnected(lastErr, c.display, ctx.Err())
	}
	return ctx.Err()
}

// shutdown makes callers waiting for a connection give up, and those to
// come, while the connection stays open for what is under way.
func (c *connector) shutdown() {
	c.stopOnce.Do(func() { close(c.stopping) })
}

// current returns the connection once the first attempt to connect has
// finished (or ctx ends), and nil if it failed: for callers that would
// rather go on without a broker than wait for one.
func (c *connector) current(ctx context.Context) *amqp091.Connection {
	for {
		c.mu.Lock()
		conn, tried, changed := c.conn, c.tried, c.changed
		c.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn
		}
		if tried {
			return nil
		}
		select {
		case <-changed:
		case <-c.ctx.Done():
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// close closes the connection and stops reconnecting.
func (c *connector) close() {
	c.shutdown()
	c.cancel()
	<-c.done
}

// channel opens a channel on the current connection, waiting for one
// while the broker is down.
func (c *connector) channel(ctx context.Context) (*amqp091.Channel, error) {
	for {
		conn, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		ch, err := conn.Channel()
		if err == nil {
			return ch, nil
		}
		if !conn.IsClosed() {
			return nil, fmt.Errorf("open a channel: %w", err)
		}
		// The connection went away under us; the next one will do.
	}
}

// do runs f on a channel of its own, returning when f does or ctx ends
// (the client's calls do not take a context). The channel is closed
// afterwards; a broker error in f has closed it already.
func (c *connector) do(ctx context.Context, f func(*amqp091.Channel) error) error {
	ch, err := c.channel(ctx)
	if err != nil {
		return err
	}
	res := make(chan error, 1)
	go func() {
		err := f(ch)
		if !ch.IsClosed() {
			ch.Close()
		}
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// brokerError returns the broker's error in err and whether there is one.
func brokerError(err error) (*amqp091.Error, bool) {
	var e *amqp091.Error
	ok := errors.As(err, &e)
	return e, ok
}

// refused reports whether err is the broker refusing a request on a
// channel (a soft error: 403 ACCESS_REFUSED, 404 NOT_FOUND, 406
// PRECONDITION_FAILED, ...), which asking again will not change, as
// opposed to a connection that went away.
func refused(err error) bool {
	e, ok := brokerError(err)
	return ok && e.Server && e.Recover
}
