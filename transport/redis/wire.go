package redis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/transport"
)

// The names of a message's parts in a stream entry and in a Pub/Sub
// envelope. The package documentation describes the layout for producers
// and consumers in other languages.
const (
	// FieldPayload is the stream field that holds the payload.
	FieldPayload = "payload"
	// HeaderPrefix prefixes the field of each of the message's own
	// headers ("h:traceparent"), so that a header never collides with the
	// payload or the message's fields.
	HeaderPrefix = "h:"
	// CEPrefix prefixes CloudEvents attributes ("ce-id"), as in the HTTP
	// and NATS bindings; Redis has no binding of its own.
	CEPrefix = "ce-"
)

// encoder writes messages in one publisher's format.
type encoder struct {
	enc transport.Encoding
}

func newEncoder(format transport.Format, source string) encoder {
	return encoder{enc: transport.Encoding{Format: format, CEPrefix: CEPrefix, Source: source}}
}

// fields calls set for every field of m's stream entry but the payload:
// the message's fields under their names, its own headers under
// HeaderPrefix+name. It returns the first header name Redis cannot carry
// (only the empty name), if any.
func (e encoder) fields(m *transport.Message, set func(name, value string)) error {
	var bad error
	e.enc.Headers(m, func(name, value string) {
		if e.isField(name) {
			set(name, value)
			return
		}
		if name == "" && bad == nil {
			bad = fmt.Errorf("a header has an empty name")
		}
		set(HeaderPrefix+name, value)
	})
	return bad
}

// isField reports whether name, as Encoding.Headers wrote it, is one of
// the message's fields rather than one of its own headers: Encoding skips
// own headers with the names of its format's fields, so the two cannot be
// confused.
func (e encoder) isField(name string) bool {
	prefix := "ferry-"
	if e.enc.Format == transport.FormatCloudEvents {
		prefix = CEPrefix
	}
	return len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix)
}

// streamValues returns m as the field-value pairs of XADD, payload first,
// and their size in bytes.
func (e encoder) streamValues(m *transport.Message) ([]any, int, error) {
	values := make([]any, 0, 2*(len(m.Headers)+6))
	size := len(FieldPayload) + len(m.Payload)
	// Payload goes as []byte: go-redis writes it unchanged, and no copy
	// of a large payload is made.
	payload := m.Payload
	if payload == nil {
		payload = []byte{}
	}
	values = append(values, FieldPayload, payload)
	err := e.fields(m, func(name, value string) {
		values = append(values, name, value)
		size += len(name) + len(value)
	})
	return values, size, err
}

// envelope returns m as one Pub/Sub message: a JSON object of the stream
// entry's fields but the payload, a newline, and the payload bytes.
// encoding/json escapes control characters inside strings, so the first
// newline always ends the object.
func (e encoder) envelope(m *transport.Message) ([]byte, error) {
	obj := make(map[string]string, len(m.Headers)+6)
	err := e.fields(m, func(name, value string) { obj[name] = value })
	if err != nil {
		return nil, err
	}
	head, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode the envelope: %w", err)
	}
	buf := make([]byte, 0, len(head)+1+len(m.Payload))
	buf = append(buf, head...)
	buf = append(buf, '\n')
	return append(buf, m.Payload...), nil
}

// decodeFields builds a message from the fields of a stream entry or an
// envelope. Fields of other producers that follow none of the layout's
// names become headers under their own names.
func decodeFields(each func(yield func(name, value string) bool)) transport.Message {
	var own map[string]string
	var payload []byte
	m := transport.Decode(CEPrefix, func(yield func(name, value string) bool) {
		for name, value := range each {
			switch {
			case name == FieldPayload:
				payload = []byte(value)
			case strings.HasPrefix(name, HeaderPrefix):
				// Decoded here, not by transport.Decode, so that a
				// header named like a field ("ce-id" in ferry's format)
				// stays a header.
				if own == nil {
					own = make(map[string]string)
				}
				own[name[len(HeaderPrefix):]] = value
			default:
				if !yield(name, value) {
					return
				}
			}
		}
	})
	if payload == nil {
		payload = []byte{}
	}
	m.Payload = payload
	for k, v := range own {
		if m.Headers == nil {
			m.Headers = make(map[string]string, len(own))
		}
		m.Headers[k] = v
	}
	return m
}

// decodeEntry decodes the field-value pairs of a stream entry as go-redis
// or a script returns them.
func decodeEntry(values map[string]any) transport.Message {
	return decodeFields(func(yield func(name, value string) bool) {
		for k, v := range values {
			s, _ := v.(string)
			if !yield(k, s) {
				return
			}
		}
	})
}

// decodeEnvelope decodes a Pub/Sub message. A message that is not an
// envelope (published by another client) is all payload.
func decodeEnvelope(data string) (transport.Message, bool) {
	i := strings.IndexByte(data, '\n')
	if i < 0 || !strings.HasPrefix(data, "{") {
		return transport.Message{Payload: []byte(data)}, false
	}
	var obj map[string]string
	dec := json.NewDecoder(bytes.NewReader([]byte(data[:i])))
	if err := dec.Decode(&obj); err != nil {
		return transport.Message{Payload: []byte(data)}, false
	}
	payload := data[i+1:]
	m := decodeFields(func(yield func(name, value string) bool) {
		if !yield(FieldPayload, payload) {
			return
		}
		for k, v := range obj {
			if k == FieldPayload {
				continue
			}
			if !yield(k, v) {
				return
			}
		}
	})
	return m, true
}

// entryMillis returns the millisecond part of a stream entry id
// ("1700000000000-3" → 1700000000000); the sequence may be left out, as
// Redis allows in the ids it is given.
func entryMillis(id string) (int64, bool) {
	ms, seq, hasSeq := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	if _, err := strconv.ParseUint(seq, 10, 64); hasSeq && err != nil {
		return 0, false
	}
	return n, true
}
