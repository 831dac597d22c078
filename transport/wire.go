package transport

import (
	"fmt"
	"strings"
	"time"
)

// The headers that carry a message's fields, in ferry's own format. A
// broker's transport writes them in its headers (Kafka record headers, NATS
// headers, AMQP headers table, Redis stream fields, HTTP headers) next to
// the message's own headers, which travel under their own names; the
// payload is the broker message's body, byte for byte.
const (
	HeaderID         = "ferry-id"
	HeaderTopic      = "ferry-topic"
	HeaderKey        = "ferry-key"
	HeaderType       = "ferry-type"
	HeaderOccurredAt = "ferry-occurred-at" // RFC 3339 with nanoseconds, UTC
)

// TraceParent is the W3C trace context header. It is one of the message's
// own headers (a producer sets it, see the otel middleware of the consumer
// runtime); it is named here because every transport passes it through
// under exactly this name so tracing tools find it.
const TraceParent = "traceparent"

// Format is how a message's fields are written as headers.
type Format int

const (
	// FormatFerry writes the ferry-* headers.
	FormatFerry Format = iota
	// FormatCloudEvents writes CloudEvents 1.0 binary-mode attributes:
	// ce-specversion, ce-id, ce-source, ce-type, ce-time, ce-subject (the
	// topic) and ce-partitionkey (the key, from the partitioning
	// extension), prefixed as the broker's CloudEvents binding says (ce_
	// for Kafka, ce- for HTTP and NATS, cloudEvents: for AMQP). The
	// payload is the event's data; its content type is the message's
	// content-type header if it has one.
	FormatCloudEvents
)

// String returns "ferry" or "cloudevents".
func (f Format) String() string {
	if f == FormatCloudEvents {
		return "cloudevents"
	}
	return "ferry"
}

// ParseFormat parses "ferry" or "cloudevents" (empty means ferry).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "ferry":
		return FormatFerry, nil
	case "cloudevents":
		return FormatCloudEvents, nil
	}
	return 0, fmt.Errorf("unknown header format %q: use ferry or cloudevents", s)
}

// Encoding writes a message's fields as headers in one broker's spelling.
// The zero value writes ferry's own headers.
type Encoding struct {
	Format Format
	// CEPrefix is the prefix of CloudEvents attributes in this broker's
	// binding: "ce_" (Kafka), "ce-" (HTTP, NATS) or "cloudEvents:" (AMQP).
	CEPrefix string
	// Source is the CloudEvents source attribute; default "ferry".
	Source string
}

// contentType is the header a CloudEvents binding reads the data's content
// type from.
const contentType = "content-type"

// Headers calls set for each header that carries m: the message's own
// headers first, then its fields. A message header with a reserved name
// (ferry-*, or the CloudEvents attributes in that format) is overwritten
// by the field, so a consumer can trust them.
func (e Encoding) Headers(m *Message, set func(name, value string)) {
	for k, v := range m.Headers {
		if e.reserved(k) {
			continue
		}
		set(k, v)
	}
	if e.Format == FormatCloudEvents {
		p := e.CEPrefix
		if p == "" {
			p = "ce-"
		}
		set(p+"specversion", "1.0")
		set(p+"id", m.ID)
		source := e.Source
		if source == "" {
			source = "ferry"
		}
		set(p+"source", source)
		typ := m.Type
		if typ == "" {
			typ = m.Topic // type is required by CloudEvents
		}
		set(p+"type", typ)
		if !m.OccurredAt.IsZero() {
			set(p+"time", m.OccurredAt.UTC().Format(time.RFC3339Nano))
		}
		if m.Topic != "" {
			set(p+"subject", m.Topic)
		}
		if m.Key != "" {
			set(p+"partitionkey", m.Key)
		}
		return
	}
	set(HeaderID, m.ID)
	if m.Topic != "" {
		set(HeaderTopic, m.Topic)
	}
	if m.Key != "" {
		set(HeaderKey, m.Key)
	}
	if m.Type != "" {
		set(HeaderType, m.Type)
	}
	if !m.OccurredAt.IsZero() {
		set(HeaderOccurredAt, m.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
}

func (e Encoding) reserved(name string) bool {
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "ferry-") {
		return true
	}
	return e.Format == FormatCloudEvents && e.CEPrefix != "" && strings.HasPrefix(lower, strings.ToLower(e.CEPrefix))
}

// Decode builds a message from headers as Headers wrote them, in either
// format: every header whose name is not a field's becomes one of the
// message's headers. cePrefix is the broker binding's CloudEvents prefix
// (see Encoding.CEPrefix); names compare without regard to case, since
// HTTP and some clients change it. A message with a ferry-id header is in
// ferry's format, and its CloudEvents-looking headers are its own. The
// payload is left to the caller.
func Decode(cePrefix string, headers func(yield func(name, value string) bool)) Message {
	type header struct{ name, lower, value string }
	var all []header
	ferryFormat := false
	for name, value := range headers {
		lower := strings.ToLower(name)
		all = append(all, header{name, lower, value})
		ferryFormat = ferryFormat || lower == HeaderID
	}
	ceLower := strings.ToLower(cePrefix)
	if ferryFormat {
		ceLower = ""
	}
	var m Message
	for _, h := range all {
		if m.decodeField(h.lower, h.value, ceLower) {
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, len(all))
		}
		m.Headers[h.name] = h.value
	}
	return m
}

// decodeField sets the field of m that the header named lower (in lower
// case) carries, and reports whether it was one. ceLower is the
// CloudEvents prefix, empty when the message is in ferry's format.
func (m *Message) decodeField(lower, value, ceLower string) bool {
	switch lower {
	case HeaderID:
		m.ID = value
	case HeaderTopic:
		m.Topic = value
	case HeaderKey:
		m.Key = value
	case HeaderType:
		m.Type = value
	case HeaderOccurredAt:
		m.OccurredAt, _ = time.Parse(time.RFC3339Nano, value)
	default:
		if ceLower == "" || !strings.HasPrefix(lower, ceLower) {
			return false
		}
		switch attr := lower[len(ceLower):]; attr {
		case "id":
			m.ID = value
		case "subject":
			m.Topic = value
		case "partitionkey":
			m.Key = value
		case "type":
			m.Type = value
		case "time":
			m.OccurredAt, _ = time.Parse(time.RFC3339Nano, value)
		case "specversion", "source":
		default:
			return false // an extension attribute: kept as a header
		}
	}
	return true
}
