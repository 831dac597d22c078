package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/webhook"
)

// benchWebhookSecret signs the pushes of both systems; an external
// receiver given with --broker must verify with it.
var benchWebhookSecret = []byte("ferry-bench-secret")

// rawWebhookConcurrency is how many requests the plain client has in
// flight, and the relay's lane pushes at once: a receiver answers each
// push as soon as it has it, so more pushes in flight add connections
// and goroutines on both sides rather than throughput (1024 gave the
// relay 20k/s where 64 gave 25-27k/s on 2 cores).
const rawWebhookConcurrency = 64

// webhookTarget pushes to an HTTP receiver. Without --broker, start runs
// one in the process: it checks each push's signature, counts it and
// answers 204, as a receiver that queues the work would. Raw is net/http
// alone: rawWebhookConcurrency goroutines POSTing the same messages with
// the same headers and signature over kept-alive connections, each push
// done when its 2xx arrives, as ferry's Publish waits for.
func webhookTarget() brokerTarget {
	return brokerTarget{
		concurrency: rawWebhookConcurrency,
		defaultURL:  "",
		start:       startWebhookReceiver,
		prepare: func(context.Context, string, string) (func(), error) {
			return func() {}, nil // a path needs nothing made: dest is the path
		},
		publisher: func(_ context.Context, url string) (transport.Publisher, error) {
			return webhook.NewPublisher(webhook.Options{BaseURL: url, Secrets: [][]byte{benchWebhookSecret}})
		},
		raw: rawWebhook,
	}
}

// startWebhookReceiver returns url if it is given, or starts a receiver
// on a loopback port and returns its URL.
func startWebhookReceiver(_ context.Context, url string) (string, func(), error) {
	if url != "" {
		return url, func() {}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("webhook receiver: %w", err)
	}
	rcv := &webhookReceiver{}
	srv := &http.Server{Handler: rcv, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// webhookReceiver verifies and counts pushes.
type webhookReceiver struct {
	received atomic.Int64
}

func (rcv *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := webhook.Verify(r.Header.Get(webhook.SignatureHeader), body, [][]byte{benchWebhookSecret}, webhook.DefaultTolerance, time.Now()); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rcv.received.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

func rawWebhook(ctx context.Context, url, dest string, msgs []*transport.Message) error {
	target := strings.TrimRight(url, "/") + "/" + strings.TrimLeft(dest, "/")
	tr := &http.Transport{MaxIdleConns: rawWebhookConcurrency, MaxIdleConnsPerHost: rawWebhookConcurrency}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	enc := transport.Encoding{CEPrefix: "ce-"}

	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	for range rawWebhookConcurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(msgs) {
					return
				}
				if err := rawPush(ctx, client, target, enc, msgs[i]); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

func rawPush(ctx context.Context, client *http.Client, target string, enc transport.Encoding, m *transport.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(m.Payload))
	if err != nil {
		return err
	}
	enc.Headers(m, func(name, value string) { req.Header.Set(name, value) })
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, benchWebhookSecret)
	mac.Write([]byte(ts + "."))
	mac.Write(m.Payload)
	req.Header.Set("Ferry-Signature", "t="+ts+",v1="+hex.EncodeToString(mac.Sum(nil)))

	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: message %s: %w", m.ID, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook: message %s: %s", m.ID, resp.Status)
	}
	return nil
}
