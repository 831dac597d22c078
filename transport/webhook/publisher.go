package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
)

// DefaultTimeout bounds each push when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Options configures a Publisher. The zero value pushes unsigned requests
// to absolute URLs only.
type Options struct {
	// BaseURL is the http or https URL that a dest which is a path is
	// joined to: with BaseURL "https://hooks.example.com/ferry", dest
	// "orders" and dest "/orders" both push to
	// https://hooks.example.com/ferry/orders. A dest that is an absolute
	// URL ignores it. Empty means every dest must be an absolute URL.
	BaseURL string
	// Secrets sign every push (see Sign and the package documentation):
	// the Ferry-Signature header holds one v1 signature per secret, so
	// during a rotation the publisher signs with the new and the old
	// secret and receivers accept either. Empty sends pushes unsigned, for
	// receivers that authenticate the sender some other way (Header, mTLS
	// through Client).
	Secrets [][]byte
	// Format is how the message's fields are written as headers: ferry's
	// Ferry-* headers (default) or CloudEvents binary mode (ce-*).
	Format transport.Format
	// Source is the CloudEvents source attribute; default "ferry".
	Source string
	// Timeout bounds each push, from connecting to reading the response
	// status; the ctx given to Publish bounds it too. Default 10s
	// (DefaultTimeout).
	Timeout time.Duration
	// RetryStatus reports whether a response status other than 2xx
	// (3xx included) is transient, so the relay retries the message,
	// rather than a refusal (*transport.RejectedError), which the relay
	// marks FAILED at once. Default DefaultRetryStatus: 5xx, 408 and 429.
	RetryStatus func(status int) bool
	// FollowRedirects makes the publisher follow 307 and 308 redirects,
	// which repeat the POST with its body at the new location (at most 10
	// in a row). By default no redirect is followed and any 3xx refuses
	// the message with the Location in the error: a webhook URL that
	// redirects is usually a configuration mistake (http instead of
	// https, a moved endpoint) better fixed in the route, and the other
	// redirects (301, 302, 303) would be followed by net/http as a GET
	// without the payload, reporting a delivery that never happened, so
	// they are refused even with FollowRedirects.
	FollowRedirects bool
	// Header is sent with every push, for example an Authorization
	// header the receiver expects. The message's own headers and fields
	// take precedence over it.
	Header http.Header
	// MaxConnsPerHost limits the connections to one receiver, so that a
	// relay with many workers does not open more than it can take. Zero
	// means no limit: one connection per concurrent push, kept alive
	// between pushes.
	MaxConnsPerHost int
	// TLS configures https:// pushes: the certificate authorities to
	// trust (a receiver with a private CA), a client certificate (a
	// receiver that authenticates ferry by mutual TLS). nil trusts the
	// system's authorities.
	TLS *tls.Config
	// Client, if set, sends the requests, for TLS settings, proxies or
	// instrumentation of its own; MaxConnsPerHost is then ignored. Give
	// its Transport a high MaxIdleConnsPerHost (net/http's default of 2
	// makes concurrent pushes open and close connections all the time).
	// The publisher uses a copy whose CheckRedirect follows
	// FollowRedirects.
	Client *http.Client
	// Logger receives the publisher's diagnostics. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultRetryStatus reports whether a response with status code status
// is worth retrying: a 5xx (the receiver failed or is overloaded), 408
// Request Timeout and 429 Too Many Requests. Other statuses say that the
// receiver will not take this message as it is.
func DefaultRetryStatus(status int) bool {
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
}

// Publisher pushes messages as HTTP POST requests. It implements
// transport.Publisher and transport.Checker. Create one with NewPublisher;
// it is safe for concurrent use, and concurrent pushes to one receiver
// share a pool of kept-alive connections.
type Publisher struct {
	opts     Options
	enc      transport.Encoding
	base     string // BaseURL without its trailing slash
	client   *http.Client
	ownTr    *http.Transport // the transport the publisher made, closed by Close
	settings pushSettings    // Options' settings; a Route has its own
	retry    func(int) bool
	log      *slog.Logger

	mu       sync.RWMutex
	closed   bool
	inFlight sync.WaitGroup
}

var (
	_ transport.Publisher = (*Publisher)(nil)
	_ transport.Checker   = (*Publisher)(nil)
)

// NewPublisher returns a publisher with opts. It fails only on invalid
// options; it does not contact any receiver.
func NewPublisher(opts Options) (*Publisher, error) {
	p := &Publisher{
		opts:     opts,
		enc:      transport.Encoding{Format: opts.Format, CEPrefix: cePrefix, Source: opts.Source},
		settings: pushSettings{header: opts.Header, secrets: opts.Secrets, timeout: opts.Timeout},
		retry:    opts.RetryStatus,
		log:      opts.Logger,
	}
	if opts.BaseURL != "" {
		u, err := url.Parse(opts.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("webhook: Options.BaseURL %q is not an absolute http or https URL (like https://hooks.example.com/ferry)", opts.BaseURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("webhook: Options.BaseURL %q has a query or fragment; a dest is joined to its path, so put the query in the dest or use absolute URLs", opts.BaseURL)
		}
		p.base = strings.TrimRight(opts.BaseURL, "/")
	}
	if err := checkSecrets("Options.Secrets", opts.Secrets); err != nil {
		return nil, err
	}
	switch opts.Format {
	case transport.FormatFerry, transport.FormatCloudEvents:
	default:
		return nil, fmt.Errorf("webhook: Options.Format %d is unknown: use transport.FormatFerry or transport.FormatCloudEvents", opts.Format)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("webhook: Options.Timeout %v is negative", opts.Timeout)
	}
	if err := checkHeader("Options.Header", opts.Header); err != nil {
		return nil, err
	}
	if opts.MaxConnsPerHost < 0 {
		return nil, fmt.Errorf("webhook: Options.MaxConnsPerHost %d is negative; zero means no limit", opts.MaxConnsPerHost)
	}
	if p.settings.timeout == 0 {
		p.settings.timeout = DefaultTimeout
	}
	if p.retry == nil {
		p.retry = DefaultRetryStatus
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if opts.Client != nil && opts.TLS != nil {
		return nil, errors.New("webhook: Options.TLS and Options.Client are both set: give the TLS settings to the Client's Transport, or leave Client unset")
	}
	if opts.Client != nil {
		c := *opts.Client
		p.client = &c
	} else {
		p.ownTr = &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   1024, // as many as a lane pushes at once: each push beyond it would open a connection and close it
			MaxConnsPerHost:       opts.MaxConnsPerHost,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			TLSClientConfig:       opts.TLS,
		}
		p.client = &http.Client{Transport: p.ownTr}
	}
	p.client.CheckRedirect = p.checkRedirect
	return p, nil
}

// checkSecrets reports an empty secret in secrets, the field named field.
func checkSecrets(field string, secrets [][]byte) error {
	for i, s := range secrets {
		if len(s) == 0 {
			return fmt.Errorf("webhook: %s[%d] is empty; an empty secret signs nothing", field, i)
		}
	}
	return nil
}

// checkHeader reports a header in h, the field named field, that HTTP
// cannot carry or that would change how the request is framed.
func checkHeader(field string, h http.Header) error {
	for name, values := range h {
		if !validName(name) || framing[strings.ToLower(name)] {
			return fmt.Errorf("webhook: %s: %q is not a valid HTTP header name, or is one of HTTP's framing headers", field, name)
		}
		for _, v := range values {
			if why := checkValue(v); why != "" {
				return fmt.Errorf("webhook: %s %q: value has %s", field, name, why)
			}
		}
	}
	return nil
}

// pushSettings is what a route may set differently from its publisher.
type pushSettings struct {
	header  http.Header
	secrets [][]byte
	timeout time.Duration
}

// RouteOptions are the settings a route may give differently from its
// publisher's, for receivers that each want their own: zero fields take
// the publisher's.
type RouteOptions struct {
	// Header is sent with the route's pushes on top of Options.Header: a
	// name set in both takes this value.
	Header http.Header
	// Secrets replace Options.Secrets: the route's pushes are signed with
	// these instead.
	Secrets [][]byte
	// Timeout replaces Options.Timeout.
	Timeout time.Duration
}

// Route returns a publisher for one route: it pushes through p, sharing
// its connections, with o's settings in place of p's. Its Close does
// nothing; closing p closes the connections they share.
func (p *Publisher) Route(o RouteOptions) (transport.Publisher, error) {
	if err := checkHeader("RouteOptions.Header", o.Header); err != nil {
		return nil, err
	}
	if err := checkSecrets("RouteOptions.Secrets", o.Secrets); err != nil {
		return nil, err
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("webhook: RouteOptions.Timeout %v is negative", o.Timeout)
	}
	r := &routePublisher{p: p, settings: p.settings}
	if len(o.Header) > 0 {
		r.settings.header = p.settings.header.Clone()
		if r.settings.header == nil {
			r.settings.header = make(http.Header, len(o.Header))
		}
		for name, values := range o.Header {
			r.settings.header[http.CanonicalHeaderKey(name)] = values
		}
	}
	if len(o.Secrets) > 0 {
		r.settings.secrets = o.Secrets
	}
	if o.Timeout > 0 {
		r.settings.timeout = o.Timeout
	}
	return r, nil
}

// routePublisher is a Publisher with its own settings, made by Publisher.Route.
type routePublisher struct {
	p        *Publisher
	settings pushSettings
}

func (r *routePublisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	return r.p.publish(ctx, dest, m, &r.settings)
}

func (r *routePublisher) Check(ctx context.Context, dest string) error { return r.p.Check(ctx, dest) }

// Close does nothing: the route's publisher owns the connections.
func (r *routePublisher) Close() error { return nil }

func (p *Publisher) checkRedirect(req *http.Request, via []*http.Request) error {
	if !p.opts.FollowRedirects {
		return http.ErrUseLastResponse
	}
	switch req.Response.StatusCode {
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return http.ErrUseLastResponse // would turn the POST into a GET without the payload
	}
	if len(via) >= 10 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	return nil
}

// URL returns the URL that Publish posts to for dest, or an error saying
// why dest is not one.
func (p *Publisher) URL(dest string) (string, error) {
	if dest == "" {
		return "", errors.New("the dest is empty: give a URL or a path")
	}
	u, err := url.Parse(dest)
	if err != nil {
		return "", fmt.Errorf("the dest is not a valid URL or path: %v", err)
	}
	if u.IsAbs() || u.Host != "" {
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", errors.New("the dest is an absolute URL but not http:// or https:// with a host")
		}
		return dest, nil
	}
	if p.base == "" {
		return "", errors.New("the dest is a path and Options.BaseURL is not set: set BaseURL or route to an absolute http(s) URL")
	}
	full := p.base + "/" + strings.TrimLeft(dest, "/")
	if _, err := url.Parse(full); err != nil {
		return "", fmt.Errorf("the dest joined to Options.BaseURL is not a valid URL: %v", err)
	}
	return full, nil
}

// Check reports whether dest is a URL or a path Publish can post to. It
// does not contact the receiver: an HTTP server cannot tell whether it
// would accept a push without being sent one.
func (p *Publisher) Check(ctx context.Context, dest string) error {
	if _, err := p.URL(dest); err != nil {
		return &transport.RejectedError{Transport: "webhook", Dest: redactDest(dest), Reason: err.Error()}
	}
	return nil
}

// Publish posts m's payload to dest and returns nil once the receiver
// answered 2xx. A status that Options.RetryStatus calls transient, a
// timeout or a connection failure returns an error the relay retries
// (a *StatusError for a status); any other status, an invalid dest or a
// header HTTP cannot carry returns a *transport.RejectedError.
func (p *Publisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	return p.publish(ctx, dest, m, &p.settings)
}

// publish is Publish with s's settings.
func (p *Publisher) publish(ctx context.Context, dest string, m *transport.Message, s *pushSettings) error {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return transport.ErrClosed
	}
	p.inFlight.Add(1)
	p.mu.RUnlock()
	defer p.inFlight.Done()

	reject := func(reason, hint string, err error) error {
		return &transport.RejectedError{Transport: "webhook", Dest: redactDest(dest), MessageID: m.ID, Reason: reason, Hint: hint, Err: err}
	}
	target, err := p.URL(dest)
	if err != nil {
		return reject(err.Error(), "", nil)
	}
	h, err := p.header(m, s)
	if err != nil {
		return reject(err.Error(), "", nil)
	}

	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if len(m.Payload) > 0 {
		body = bytes.NewReader(m.Payload)
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, target, body)
	if err != nil {
		return reject(fmt.Sprintf("cannot make a request to %s: %v", redact(target), err), "", err)
	}
	req.Header = h
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("webhook: POST %s (message %s): no response within %v (Timeout, of the publisher or its route): %w", redact(target), m.ID, s.timeout, unwrapURLError(err))
		}
		return fmt.Errorf("webhook: POST %s (message %s): %w", redact(target), m.ID, unwrapURLError(err))
	}
	defer drain(resp.Body)

	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	se := &StatusError{URL: redact(target), StatusCode: code, Status: resp.Status, Body: readSnippet(resp.Body)}
	redirect := code >= 300 && code <= 399
	if redirect {
		se.Location = resp.Header.Get("Location")
	}
	if p.retry(code) {
		se.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		p.log.Debug("webhook: push not taken, will be retried", "url", se.URL, "message", m.ID, "status", code, "retry_after", se.RetryAfter)
		if se.RetryAfter > 0 {
			return ferry.RetryLater(se, se.RetryAfter) // the relay waits as asked
		}
		return se
	}
	if redirect {
		hint := "update the route's URL; redirects are not followed (see Options.FollowRedirects)"
		if p.opts.FollowRedirects {
			hint = "update the route's URL; only 307 and 308 redirects are followed, since net/http turns the POST into a GET for the others"
		}
		return reject(se.reason(), hint, se)
	}
	return reject(se.reason(), hint(code), se)
}

// header returns the request headers for m.
func (p *Publisher) header(m *transport.Message, s *pushSettings) (http.Header, error) {
	h := make(http.Header, len(s.header)+len(m.Headers)+8)
	h.Set("User-Agent", "ferry")
	for name, values := range s.header {
		h[http.CanonicalHeaderKey(name)] = values
	}
	var bad error
	ce := p.enc.Format == transport.FormatCloudEvents
	p.enc.Headers(m, func(name, value string) {
		if bad != nil {
			return
		}
		if !validName(name) {
			bad = fmt.Errorf("header %q is not a valid HTTP header name (letters, digits and !#$%%&'*+-.^_`|~ only); rename it", name)
			return
		}
		if framing[strings.ToLower(name)] {
			bad = fmt.Errorf("header %q is one HTTP uses to frame the request and cannot carry a message header; rename it", name)
			return
		}
		if ce && len(name) > len(cePrefix) && strings.EqualFold(name[:len(cePrefix)], cePrefix) {
			value = ceEncode(value)
		} else if why := checkValue(value); why != "" {
			bad = fmt.Errorf("header %q cannot be sent over HTTP as it is: its value has %s", name, why)
			return
		}
		h.Set(name, value)
	})
	if bad != nil {
		return nil, bad
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	if h.Get(idempotencyKey) == "" && m.ID != "" && checkValue(m.ID) == "" {
		h.Set(idempotencyKey, m.ID)
	}
	if len(s.secrets) > 0 {
		h.Set(SignatureHeader, Sign(m.Payload, s.secrets, time.Now()))
	}
	return h, nil
}

// Close waits for the pushes in flight and closes idle connections.
// Publish after Close returns transport.ErrClosed.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.inFlight.Wait()
	if p.ownTr != nil {
		p.ownTr.CloseIdleConnections()
	}
	return nil
}

// StatusError is a push the receiver answered with a status other than
// 2xx. Publish returns it as it is when the status is transient, and
// inside a *transport.RejectedError otherwise; find it with errors.As.
type StatusError struct {
	URL        string // the URL posted to, without query and credentials
	StatusCode int
	Status     string // "503 Service Unavailable"
	Body       string // the start of the response body, on one line
	// RetryAfter is the wait the receiver asked for in a Retry-After
	// header, or zero.
	RetryAfter time.Duration
	// Location is where a redirect pointed.
	Location string
}

func (e *StatusError) Error() string {
	return "webhook: POST " + e.reason()
}

func (e *StatusError) reason() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s answered %s", e.URL, e.Status)
	if e.Location != "" {
		fmt.Fprintf(&b, " to %s", e.Location)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (Retry-After %v)", e.RetryAfter)
	}
	if e.Body != "" {
		b.WriteString(": ")
		b.WriteString(e.Body)
	}
	return b.String()
}

// hint says what to do about a refusal with status code.
func hint(code int) string {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return "check that the receiver has the publisher's signing secret (Options.Secrets) or the credentials in Options.Header"
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "check the route's URL and that the receiver serves POST there"
	case http.StatusRequestEntityTooLarge:
		return "the receiver limits request bodies: raise its limit or send a smaller payload"
	}
	return ""
}

// snippetLen bounds how much of a response body goes into an error.
const snippetLen = 512

// readSnippet returns the start of a response body as one line of text.
func readSnippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, snippetLen))
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Join(strings.Fields(s), " ")
	if len(b) == snippetLen {
		s += " ..."
	}
	return s
}

// drain reads what is left of a response body, up to a bound, so that its
// connection can be kept alive, and closes it.
func drain(body io.ReadCloser) {
	io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}

// redact returns u without credentials, query and fragment, which may
// hold secrets that have no place in an error stored in the outbox.
func redact(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(invalid URL)"
	}
	parsed.User = nil
	parsed.RawQuery = ""
	parsed.Fragment = ""
	return parsed.String()
}

// redactDest is dest for errors: an absolute URL redacted, a path as it is.
func redactDest(dest string) string {
	if u, err := url.Parse(dest); err == nil && u.Host != "" && (u.User != nil || u.RawQuery != "" || u.Fragment != "") {
		return redact(dest)
	}
	return dest
}

// unwrapURLError drops net/http's *url.Error, whose message repeats the
// method and the full URL (query included), keeping what it wraps.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
