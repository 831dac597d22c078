package ferry

import (
	"crypto/md5"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// DefaultLane is the lane of a message that names none.
const DefaultLane = "default"

// Shards is the number of shards the key space is split into. Relay
// instances lease shards, so it bounds how many instances can share one
// lane's work. It is part of the schema: PostgreSQL and MariaDB compute a
// row's shard in a generated column, so changing it needs a migration.
const Shards = 64

// Message is what a producer writes to the outbox.
type Message struct {
	// ID is the message_id: unique, stable across redeliveries, so that
	// consumers can deduplicate. Empty means ferry generates a UUIDv7.
	// Writing an ID that is already in the outbox is a no-op.
	ID string
	// Lane is the class of traffic (for example "online" or "batch"); each
	// lane has its own share of relay capacity. Empty means DefaultLane.
	Lane string
	// Topic says where the message goes; the relay routes topics to
	// destinations. Required.
	Topic string
	// Key orders messages: within a lane, messages with the same key are
	// delivered one at a time in commit order. Empty means unordered.
	Key string
	// Type names the kind of event or command, e.g. "OrderPlaced".
	Type string
	// Headers travel with the message to the destination.
	Headers map[string]string
	// Payload is delivered byte for byte.
	Payload []byte
	// DeliverAt is the earliest delivery time; zero means at once (by the
	// database's clock). A keyed message that is not yet due holds back the
	// later messages of its key.
	DeliverAt time.Time
}

// Status is the state of a stored message.
type Status string

// The states of a message. WAITING moves to DONE when delivered, or to
// FAILED when its retry budget is spent; a person or an API call moves
// FAILED to WAITING (retry) or EXCLUDED (give up).
const (
	StatusWaiting  Status = "WAITING"
	StatusDone     Status = "DONE"
	StatusFailed   Status = "FAILED"
	StatusExcluded Status = "EXCLUDED"
)

// Valid reports whether s is one of the four states.
func (s Status) Valid() bool {
	switch s {
	case StatusWaiting, StatusDone, StatusFailed, StatusExcluded:
		return true
	}
	return false
}

// Record is a message as stored, with its delivery state.
type Record struct {
	Message
	// Seq is the outbox row id: increasing in insert order. Per key,
	// delivery follows Seq (see the package documentation for how that
	// relates to commit order).
	Seq         int64
	Shard       int
	Status      Status
	Attempts    int // fail_count: failed delivery attempts so far
	OccurredAt  time.Time
	AvailableAt time.Time
	ProcessedAt time.Time // when it became DONE; zero otherwise
	FailedAt    time.Time // when it last failed; zero if never
	LastError   string
}

// Limits bounds what a writer accepts.
const (
	MaxIDLen          = 200
	MaxNameLen        = 200 // lane, topic, type
	MaxKeyLen         = 500
	MaxHeaders        = 64
	DefaultMaxPayload = 1 << 20
)

// ShardOf returns the shard of a message with the given key and id: the
// key's shard, or for an unkeyed message the id's, so unkeyed messages
// spread over all shards. It is the low six bits of the first byte of the
// MD5 digest, a function every database has: PostgreSQL and MariaDB
// compute the same value in a generated column, and SQLite stores what
// this returns. So a key has the same shard on every database.
func ShardOf(key, id string) int {
	basis := key
	if basis == "" {
		basis = id
	}
	sum := md5.Sum([]byte(basis))
	return int(sum[0] & (Shards - 1))
}

// NewID returns a new message id: a UUIDv7, so ids sort by creation time.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source does.
		return uuid.NewString()
	}
	return id.String()
}

// normalize fills in defaults and checks m against the limits. It returns
// an error that names the message and the field at fault.
func (m *Message) normalize(maxPayload int) error {
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.Lane == "" {
		m.Lane = DefaultLane
	}
	bad := func(field, problem string) error {
		return &InvalidMessageError{ID: m.ID, Field: field, Problem: problem}
	}
	switch {
	case len(m.ID) > MaxIDLen || !utf8.ValidString(m.ID):
		return bad("ID", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxIDLen))
	case m.Topic == "":
		return bad("Topic", "is required: it decides where the relay sends the message")
	case len(m.Topic) > MaxNameLen || !utf8.ValidString(m.Topic):
		return bad("Topic", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxNameLen))
	case len(m.Lane) > MaxNameLen || !utf8.ValidString(m.Lane):
		return bad("Lane", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxNameLen))
	case len(m.Type) > MaxNameLen || !utf8.ValidString(m.Type):
		return bad("Type", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxNameLen))
	case len(m.Key) > MaxKeyLen || !utf8.ValidString(m.Key):
		return bad("Key", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxKeyLen))
	case len(m.Headers) > MaxHeaders:
		return bad("Headers", fmt.Sprintf("has %d entries; at most %d are allowed", len(m.Headers), MaxHeaders))
	case maxPayload > 0 && len(m.Payload) > maxPayload:
		return &PayloadTooLargeError{ID: m.ID, Topic: m.Topic, Size: len(m.Payload), Limit: maxPayload}
	}
	for k, v := range m.Headers {
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return bad("Headers", fmt.Sprintf("header %q: names must be non-empty and names and values valid UTF-8", k))
		}
	}
	return nil
}
