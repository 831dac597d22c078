package local_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport/local"
)

func TestWriterLine(t *testing.T) {
	occurred := time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.FixedZone("KST", 9*3600))
	base := ferry.Record{
		Message: ferry.Message{ID: "m-1", Lane: "online", Topic: "orders.placed", Key: "order-7",
			Type: "OrderPlaced", Headers: map[string]string{"trace": "abc"}},
		Seq: 42, OccurredAt: occurred,
	}
	for _, tc := range []struct {
		name    string
		edit    func(r *ferry.Record)
		want    string
		payload []byte // the payload the line must carry, decoded
	}{
		{
			name: "JSON payload is embedded and compacted",
			edit: func(r *ferry.Record) { r.Payload = []byte("{\n  \"total\": 12,\n  \"note\": \"<a&b>\"\n}") },
			want: `{"id":"m-1","seq":42,"lane":"online","topic":"orders.placed","key":"order-7","type":"OrderPlaced","headers":{"trace":"abc"},"occurred_at":"2025-01-01T18:04:05.123456Z","payload":{"total":12,"note":"<a&b>"}}`,
		},
		{
			name: "a JSON string or number is JSON too",
			edit: func(r *ferry.Record) { r.Payload = []byte(`12345678901234567890`) },
			want: `"payload":12345678901234567890}`,
		},
		{
			name:    "binary payload goes to payload_base64",
			edit:    func(r *ferry.Record) { r.Payload = []byte{0xff, 0x00, 'x'} },
			want:    `"payload_base64":"/wB4"}`,
			payload: []byte{0xff, 0x00, 'x'},
		},
		{
			name:    "text that is not JSON goes to payload_base64",
			edit:    func(r *ferry.Record) { r.Payload = []byte("hello") },
			want:    `"payload_base64":"aGVsbG8="}`,
			payload: []byte("hello"),
		},
		{
			name:    "empty payload is an empty payload_base64",
			edit:    func(r *ferry.Record) { r.Payload = nil },
			want:    `"payload_base64":""}`,
			payload: []byte{},
		},
		{
			name: "empty key, type, headers and time are left out",
			edit: func(r *ferry.Record) {
				r.Key, r.Type, r.Headers, r.OccurredAt, r.Payload = "", "", nil, time.Time{}, []byte(`{}`)
			},
			want: `{"id":"m-1","seq":42,"lane":"online","topic":"orders.placed","payload":{}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			tc.edit(&r)
			var buf bytes.Buffer
			if err := local.NewWriter(&buf).Deliver(context.Background(), &r); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("want exactly one line, got %q", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("line\n  %s\ndoes not contain\n  %s", out, tc.want)
			}
			var decoded struct {
				ID            string  `json:"id"`
				PayloadBase64 *string `json:"payload_base64"`
			}
			if err := json.Unmarshal([]byte(out), &decoded); err != nil || decoded.ID != "m-1" {
				t.Fatalf("line is not a JSON object with the id: %v (%q)", err, out)
			}
			if tc.payload != nil {
				if decoded.PayloadBase64 == nil {
					t.Fatal("no payload_base64")
				}
				got, err := base64.StdEncoding.DecodeString(*decoded.PayloadBase64)
				if err != nil || !bytes.Equal(got, tc.payload) {
					t.Fatalf("payload_base64 decodes to %q (%v), want %q", got, err, tc.payload)
				}
			}
		})
	}
}

// TestWriterConcurrent checks that lines written from many goroutines do
// not interleave; run with -race.
func TestWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	d := local.NewWriter(&buf)
	big := `{"data":"` + strings.Repeat("x", 10000) + `"}`
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				r := &ferry.Record{Message: ferry.Message{ID: fmt.Sprintf("%d-%d", g, i), Topic: "t", Payload: []byte(big)}}
				if err := d.Deliver(context.Background(), r); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	seen := map[string]bool{}
	for sc.Scan() {
		var l struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not JSON: %v", len(seen)+1, err)
		}
		seen[l.ID] = true
	}
	if len(seen) != 16*50 {
		t.Fatalf("%d distinct messages written, want %d", len(seen), 16*50)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterErrors(t *testing.T) {
	r := record("A")
	err := local.NewWriter(failingWriter{}).Deliver(context.Background(), r)
	if err == nil || !strings.Contains(err.Error(), "write message m-1: disk full") || ferry.IsPermanent(err) {
		t.Fatalf("got %v, want a retryable error naming the message and the cause", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if err := local.NewWriter(&buf).Deliver(ctx, r); !errors.Is(err, context.Canceled) || buf.Len() != 0 {
		t.Fatalf("cancelled: got %v and %q, want context.Canceled and nothing written", err, buf.String())
	}

	defer func() {
		if recover() == nil {
			t.Fatal("NewWriter(nil) did not panic")
		}
	}()
	local.NewWriter(nil)
}
