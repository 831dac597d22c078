package config

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/consume/inbox"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport/webhook"
)

// ConsumeConfig is a checked configuration of `ferry consume`: consumers
// that read from brokers and forward each message to an HTTP endpoint of
// the user's service, with ferry's ordering, retries, dead letters and
// signatures, so that a service in any language gets them without a line
// of Go.
//
//	transports:
//	  events: {type: kafka, brokers: [localhost:9092]}
//	consumers:
//	  billing:                        # the consumer's name: its group
//	    from: events                  # a transport defined above
//	    topics: [orders, payments]    # what to read
//	    order: key                    # key | partition | unordered
//	    concurrency: 64               # requests to the service at once
//	    max_attempts: 5
//	    backoff: {initial: 100ms, max: 30s}
//	    dead_letter: {to: events, destination: "{source}.dead"}
//	    deliver:
//	      url: http://localhost:8080/ferry/events
//	      secret: ${FERRY_SECRET}     # signs each request (Ferry-Signature)
//	      timeout: 10s
//	      retry_status: [409]         # besides 5xx, 408 and 429
//
// The service answers 2xx when it has handled a message; 5xx, 408, 429 or
// no answer make ferry retry it (holding back its key), and any other 4xx
// sends it to the dead letters. Each request carries the message id as
// Ferry-Id and Idempotency-Key, for the service to drop a redelivery.
//
// A file may hold the relay's sections too: `ferry consume` ignores
// database, relay, lanes and routes, and `ferry relay` ignores consumers.
type ConsumeConfig struct {
	File       string
	Transports []Transport
	Consumers  []Consumer
	// Inbox, if set, is where forwarded message ids are remembered, so
	// that a message the service already took is not sent again.
	Inbox *InboxConfig
	Log   Log
}

// InboxConfig is the inbox section of a `ferry consume` config:
//
//	inbox:
//	  database: postgres://ferry@db/app   # or mysql://..., sqlite:FILE
//	  table: ferry_inbox
//	  retention: 7d                       # how long ids are remembered
//
// Each consumer checks the inbox before it forwards a message and records
// the id once the service answered 2xx. A message that comes again (a
// broker redelivery, a rebalance, a replay under the same id) is
// acknowledged without a request. A crash between the 2xx and the record
// sends it once more: the Idempotency-Key header covers that last window.
type InboxConfig struct {
	URL       string
	Table     string
	Retention time.Duration
}

// Consumer is one consumer of a ConsumeConfig.
type Consumer struct {
	Name           string
	From           string // transport name
	Topics         []string
	Order          consume.Order
	Concurrency    int
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// DeadLetterTo and DeadLetterDest name where dead letters go; empty
	// To means none (a message given up on goes back to the broker).
	DeadLetterTo   string
	DeadLetterDest string
	// URL is the endpoint messages are forwarded to.
	URL     string
	deliver webhook.Options
	Pos     Pos
}

// LoadConsume reads and checks the `ferry consume` config at path.
func LoadConsume(path string) (*ConsumeConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConsume(data, path)
}

// ParseConsume checks the `ferry consume` config in data; name is the
// file name used in problems.
func ParseConsume(data []byte, name string) (*ConsumeConfig, error) {
	return parseConsume(data, name, os.LookupEnv)
}

func parseConsume(data []byte, name string, lookup func(string) (string, bool)) (*ConsumeConfig, error) {
	p := &parser{file: name, lookup: lookup}
	c := &ConsumeConfig{File: name, Log: Log{Level: slog.LevelInfo, Format: "text"}}
	root, ok := p.document(data)
	if ok {
		top := p.mapping(nil, root, "")
		for _, relayOnly := range []string{"database", "relay", "lanes", "routes"} {
			top.get(relayOnly) // the relay's; known, not read here
		}
		// The transports section is shared with the relay's config.
		rc := &Config{}
		known := p.transports(rc, top)
		c.Transports = rc.Transports
		p.consumers(c, top, known)
		if top.has("inbox") {
			in := top.sub("inbox")
			c.Inbox = &InboxConfig{URL: in.text("database"), Table: in.text("table"), Retention: in.duration("retention", positive)}
			if c.Inbox.URL == "" {
				in.missing("database", "where forwarded ids are kept, such as sqlite:ferry-consume.db or postgres://user@host/db")
			} else if err := checkURL(c.Inbox.URL); err != nil {
				e, _ := in.get("database")
				p.addf(e.value, in.join("database"), "%v", err)
			}
			if c.Inbox.Table != "" {
				if err := sqlstore.CheckTable(c.Inbox.Table); err != nil {
					e, _ := in.get("table")
					p.addf(e.value, in.join("table"), "%s", strings.TrimPrefix(err.Error(), "ferry: "))
				}
			}
			in.done()
		}
		var lc Config
		p.log(&lc, top)
		c.Log = lc.Log
		top.done()
	}
	if len(p.problems) > 0 {
		sortProblems(p.problems)
		return nil, &Error{Problems: p.problems}
	}
	return c, nil
}

func (p *parser) consumers(c *ConsumeConfig, top *mapping, transports map[string]string) {
	e, _ := top.get("consumers")
	section := p.mapping(e.key, e.value, "consumers")
	if len(section.keys) == 0 {
		p.addf(e.key, "consumers", "at least one consumer is required, such as `consumers: {billing: {from: events, topics: [orders], deliver: {url: http://localhost:8080/events}}}`")
	}
	names := slices.Sorted(maps.Keys(transports))
	types := transportTypes()
	checkTransport := func(m *mapping, key, name string, needSubscriber bool) {
		typ, defined := transports[name]
		ent, _ := m.get(key)
		switch {
		case !defined:
			msg := fmt.Sprintf("transport %q is not defined", name)
			if s := suggest(name, names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += fmt.Sprintf(" (defined: %s)", strings.Join(names, ", "))
			}
			p.addf(ent.value, m.join(key), "%s", msg)
		case types[typ].sink:
			p.addf(ent.value, m.join(key), "transport %q is a %s sink: name a broker transport", name, typ)
		case needSubscriber && typ == "webhook":
			p.addf(ent.value, m.join(key), "transport %q is a webhook: ferry cannot read from it; consume from a broker (kafka, nats, amqp, redis)", name)
		}
	}
	for _, name := range section.keys {
		ce, _ := section.get(name)
		path := section.join(name)
		p.name(ce.key, path, "consumer", 200)
		m := p.mapping(ce.key, ce.value, path)
		con := Consumer{Name: name, Pos: p.pos(ce.key)}
		if from, _, ok := m.scalar("from"); ok {
			con.From = from
			checkTransport(m, "from", from, true)
		} else if !m.has("from") {
			m.missing("from", "the transport to read from, defined under transports")
		}
		con.Topics = m.list("topics")
		if len(con.Topics) == 0 {
			m.missing("topics", "what to read, such as [orders]")
		}
		con.Order, _ = consume.ParseOrder(m.oneOf("order", "key", "key", "partition", "unordered"))
		con.Concurrency = m.positiveInt("concurrency")
		con.MaxAttempts = m.positiveInt("max_attempts")
		if m.has("backoff") {
			b := m.sub("backoff")
			con.InitialBackoff, con.MaxBackoff = b.duration("initial", positive), b.duration("max", positive)
			b.done()
		}
		if m.has("dead_letter") {
			d := m.sub("dead_letter")
			if to, _, ok := d.scalar("to"); ok {
				con.DeadLetterTo = to
				checkTransport(d, "to", to, false)
			} else {
				d.missing("to", "the transport dead letters are published to")
			}
			con.DeadLetterDest = d.text("destination")
			if con.DeadLetterDest == "" {
				con.DeadLetterDest = "{source}.dead"
			}
			d.done()
		}
		if m.has("deliver") {
			con.URL, con.deliver = p.deliver(m.sub("deliver"))
		} else {
			m.missing("deliver", "where each message goes, such as {url: http://localhost:8080/events}")
		}
		m.done()
		c.Consumers = append(c.Consumers, con)
	}
	section.done()
}

// deliver reads a consumer's deliver section: the endpoint and the
// options of the HTTP push.
func (p *parser) deliver(d *mapping) (string, webhook.Options) {
	url := d.text("url")
	if url == "" && !d.has("url") {
		d.missing("url", "the endpoint of your service, such as http://localhost:8080/events")
	} else if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		e, _ := d.get("url")
		p.addf(e.value, d.join("url"), "%q is not an http:// or https:// URL", url)
	}
	o := webhook.Options{Timeout: d.duration("timeout", positive), Format: d.format(), Source: d.text("source")}
	if secret := d.text("secret"); secret != "" {
		o.Secrets = [][]byte{[]byte(secret)}
	}
	if e, ok := d.get("retry_status"); ok {
		var extra []int
		for _, s := range d.list("retry_status") {
			code, err := strconv.Atoi(s)
			if err != nil || code < 300 || code > 599 {
				p.addf(e.value, d.join("retry_status"), "%q is not an HTTP status from 300 to 599", s)
				continue
			}
			extra = append(extra, code)
		}
		o.RetryStatus = func(status int) bool { return webhook.DefaultRetryStatus(status) || slices.Contains(extra, status) }
	}
	d.done()
	return url, o
}

// ConsumersBuilt holds the consumers a ConsumeConfig describes, with the
// connections they use. Close it when they have stopped.
type ConsumersBuilt struct {
	Consumers []*consume.Consumer
	names     []string
	inbox     *inbox.Inbox
	closers   []io.Closer
}

// Build makes the consumers. Brokers are not connected to (one that is
// down is retried behind the consumers); the inbox's database is, and its
// table is created if need be. log receives their logs.
func (c *ConsumeConfig) Build(ctx context.Context, log *slog.Logger) (_ *ConsumersBuilt, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env := buildEnv{logger: log}
	b := &ConsumersBuilt{}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if c.Inbox != nil {
		if b.inbox, err = openInbox(ctx, c.Inbox, log, b); err != nil {
			return nil, err
		}
	}
	opened := map[string]built{}
	for _, t := range c.Transports {
		tr, err := t.build(env)
		if err != nil {
			return nil, fmt.Errorf("config: %s: transport %q (%s): %w", t.Pos, t.Name, t.Type, err)
		}
		opened[t.Name] = tr
		if tr.publisher != nil {
			b.closers = append(b.closers, tr.publisher)
		}
	}
	for _, con := range c.Consumers {
		tr := opened[con.From]
		if tr.subscriber == nil {
			return nil, fmt.Errorf("config: %s: consumer %q: transport %q cannot be read from", con.Pos, con.Name, con.From)
		}
		sub, err := tr.subscriber()
		if err != nil {
			return nil, fmt.Errorf("config: %s: consumer %q: %w", con.Pos, con.Name, err)
		}
		b.closers = append(b.closers, sub)
		o := con.deliver
		o.Logger = log
		fwd, err := webhook.NewPublisher(o)
		if err != nil {
			return nil, fmt.Errorf("config: %s: consumer %q: deliver: %w", con.Pos, con.Name, err)
		}
		b.closers = append(b.closers, fwd)
		opts := consume.Options{
			Name: con.Name, Subscriber: sub, Topics: con.Topics, Order: con.Order,
			Concurrency: con.Concurrency, MaxAttempts: con.MaxAttempts,
			InitialBackoff: con.InitialBackoff, MaxBackoff: con.MaxBackoff,
			Handler: consume.Forward(fwd, con.URL), Logger: log,
		}
		if b.inbox != nil {
			opts.Handler = onceEach(b.inbox, con.Name, opts.Handler)
		}
		if con.DeadLetterTo != "" {
			opts.DeadLetter = consume.ToTopic(opened[con.DeadLetterTo].publisher, con.DeadLetterDest)
		}
		cons, err := consume.New(opts)
		if err != nil {
			return nil, fmt.Errorf("config: %s: consumer %q: %w", con.Pos, con.Name, err)
		}
		b.Consumers = append(b.Consumers, cons)
		b.names = append(b.names, con.Name)
	}
	return b, nil
}

// openInbox opens the inbox's database and table, registering what to
// close with b.
func openInbox(ctx context.Context, c *InboxConfig, log *slog.Logger, b *ConsumersBuilt) (*inbox.Inbox, error) {
	st, err := store.Open(ctx, c.URL, sqlstore.Options{})
	if err != nil {
		return nil, fmt.Errorf("config: inbox: %w", err)
	}
	b.closers = append(b.closers, st)
	sq, ok := st.(interface{ SQLDB() *sql.DB })
	if !ok {
		return nil, fmt.Errorf("config: inbox: %s is not an SQL database", store.Describe(c.URL))
	}
	in, err := inbox.New(sq.SQLDB(), st.Dialect(), inbox.Options{Table: c.Table, Retention: c.Retention, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("config: inbox: %w", err)
	}
	if err := in.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("config: inbox %s in %s: %w", in.Table(), store.Describe(c.URL), err)
	}
	return in, nil
}

// onceEach skips the messages the inbox has seen for consumer and records
// each that h handled. It holds no transaction during h, whose effect is
// elsewhere (an HTTP call): a crash between h and the record sends the
// message once more.
func onceEach(in *inbox.Inbox, consumer string, h consume.Handler) consume.Handler {
	record := in.Handler(consumer, func(context.Context, *sql.Tx, *consume.Message) error { return nil })
	return consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		seen, err := in.Seen(ctx, consumer, m.ID)
		if err != nil {
			return fmt.Errorf("inbox: %w", err)
		}
		if seen {
			return nil
		}
		if err := h.Handle(ctx, m); err != nil {
			return err
		}
		return record.Handle(ctx, m)
	})
}

// Run runs the consumers, and the inbox's clean-up, until ctx ends; one
// consumer failing stops them all, so that the process exits and a
// supervisor restarts it.
func (b *ConsumersBuilt) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(b.Consumers))
	for i, c := range b.Consumers {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				errs[i] = fmt.Errorf("consumer %s: %w", b.names[i], err)
				cancel()
			}
		})
	}
	if b.inbox != nil {
		wg.Go(func() { b.inbox.Run(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close closes the connections of the consumers.
func (b *ConsumersBuilt) Close() error {
	var errs []error
	for _, c := range slices.Backward(b.closers) {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	b.closers = nil
	return errors.Join(errs...)
}
