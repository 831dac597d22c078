package local

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
)

// NewWriter returns a destination that writes each message to w as one
// line of JSON:
//
//	{"id":"0190…","seq":42,"lane":"online","topic":"orders.placed","key":"order-7","type":"OrderPlaced","headers":{"trace":"abc"},"occurred_at":"2025-01-02T03:04:05.123456Z","payload":{"total":12}}
//
// key, type and headers are left out when empty. A payload that is valid
// JSON is embedded as it is (compacted onto the line); any other payload,
// including an empty one, is given base64-encoded in "payload_base64"
// instead. Each line is written with a single Write call under a lock, so
// the destination is safe for concurrent use and lines never interleave.
// A failed Write is returned as the delivery error, so the relay retries.
//
// NewWriter panics if w is nil.
func NewWriter(w io.Writer) ferry.Destination {
	if w == nil {
		panic("local: NewWriter: nil io.Writer")
	}
	return &writer{w: w}
}

type writer struct {
	mu sync.Mutex // serializes Writes to w
	w  io.Writer
}

// line is the JSON form of one message.
type line struct {
	ID            string            `json:"id"`
	Seq           int64             `json:"seq"`
	Lane          string            `json:"lane"`
	Topic         string            `json:"topic"`
	Key           string            `json:"key,omitempty"`
	Type          string            `json:"type,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	OccurredAt    *time.Time        `json:"occurred_at,omitempty"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
	PayloadBase64 *string           `json:"payload_base64,omitempty"`
}

func (d *writer) Deliver(ctx context.Context, r *ferry.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := encodeLine(r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.w.Write(b); err != nil {
		return fmt.Errorf("local: write message %s: %w", r.ID, err)
	}
	return nil
}

// encodeLine returns r as one line of JSON, newline included.
func encodeLine(r *ferry.Record) ([]byte, error) {
	l := line{ID: r.ID, Seq: r.Seq, Lane: r.Lane, Topic: r.Topic, Key: r.Key, Type: r.Type, Headers: r.Headers}
	if !r.OccurredAt.IsZero() {
		t := r.OccurredAt.UTC()
		l.OccurredAt = &t
	}
	if len(r.Payload) > 0 && json.Valid(r.Payload) {
		l.Payload = r.Payload
	} else {
		s := base64.StdEncoding.EncodeToString(r.Payload)
		l.PayloadBase64 = &s
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&l); err != nil {
		// Only a payload json.Valid accepts but Encode rejects could get
		// here; retrying would not help.
		return nil, ferry.Permanent(fmt.Errorf("local: encode message %s: %w", r.ID, err))
	}
	return buf.Bytes(), nil
}
