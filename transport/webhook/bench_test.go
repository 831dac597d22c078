package webhook

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// The benchmarks push from 64 goroutines (as a relay lane's workers do)
// to a receiver in the process that verifies each signature and answers
// 204. BenchmarkPublishRaw does the same with net/http alone, as a
// baseline for the publisher's overhead:
//
//	go test -run XXX -bench Publish -count 6 ./transport/webhook/

var benchSecrets = [][]byte{[]byte("bench-secret")}

func benchReceiver(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = Verify(r.Header.Get(SignatureHeader), body, benchSecrets, DefaultTolerance, time.Now())
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchPush(b *testing.B, push func(m *transport.Message) error) {
	payload := bytes.Repeat([]byte("x"), 200)
	var seq atomic.Int64
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			m := &transport.Message{ID: "m-" + strconv.FormatInt(i, 10), Topic: "orders", Key: "k-" + strconv.FormatInt(i%100, 10),
				Type: "OrderPlaced", Payload: payload, OccurredAt: time.Now()}
			if err := push(m); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPublish(b *testing.B) {
	srv := benchReceiver(b)
	p, err := NewPublisher(Options{BaseURL: srv.URL, Secrets: benchSecrets})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	ctx := context.Background()
	benchPush(b, func(m *transport.Message) error { return p.Publish(ctx, "orders", m) })
}

func BenchmarkPublishRaw(b *testing.B) {
	srv := benchReceiver(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	var enc transport.Encoding
	benchPush(b, func(m *transport.Message) error {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/orders", bytes.NewReader(m.Payload))
		if err != nil {
			return err
		}
		enc.Headers(m, func(name, value string) { req.Header.Set(name, value) })
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(SignatureHeader, Sign(m.Payload, benchSecrets, time.Now()))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	})
}
