package consume

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// The headers a dead letter carries besides the original message's own
// (its id, key, type and headers are kept as they were).
const (
	HeaderDeadReason   = "dead-letter-reason"   // the last error
	HeaderDeadAttempts = "dead-letter-attempts" // how many times the consumer tried
	HeaderDeadConsumer = "dead-letter-consumer" // the consumer that gave up
	HeaderDeadSource   = "dead-letter-source"   // where the message was read from
	HeaderDeadAt       = "dead-letter-at"       // when, RFC 3339 UTC
)

// ToTopic returns dead letters that are published through p to dest, on
// the same broker or another: the original message, payload and headers
// untouched, plus the dead-letter-* headers. dest may use the placeholder
// {source} for the topic the message was read from, such as
// "{source}.dead".
func ToTopic(p transport.Publisher, dest string) DeadLetterer {
	return &topicDeadLetters{p: p, dest: dest}
}

type topicDeadLetters struct {
	p    transport.Publisher
	dest string
}

func (t *topicDeadLetters) DeadLetter(ctx context.Context, m *Message, reason error) error {
	dest := t.dest
	if dest == "" {
		return fmt.Errorf("consume: dead-letter destination is empty")
	}
	dest = strings.ReplaceAll(dest, "{source}", m.Source)
	dead := DeadMessage(m, reason)
	if err := t.p.Publish(ctx, dest, dead); err != nil {
		return fmt.Errorf("consume: publish dead letter %s to %q: %w", m.ID, dest, err)
	}
	return nil
}

// DeadMessage returns m as a dead letter: the same message with the
// dead-letter-* headers added.
func DeadMessage(m *Message, reason error) *transport.Message {
	dead := m.Message
	dead.Headers = maps.Clone(m.Headers)
	if dead.Headers == nil {
		dead.Headers = map[string]string{}
	}
	dead.Headers[HeaderDeadReason] = reason.Error()
	dead.Headers[HeaderDeadAttempts] = strconv.Itoa(m.Attempt)
	dead.Headers[HeaderDeadSource] = m.Source
	dead.Headers[HeaderDeadAt] = time.Now().UTC().Format(time.RFC3339)
	dead.Headers[HeaderDeadConsumer] = m.Consumer
	return &dead
}
