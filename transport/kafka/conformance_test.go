package kafka

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/transporttest"
)

// topicMaxBytes is the max.message.bytes of the conformance topics, so
// that the broker, not the client, refuses the suite's oversized message.
const topicMaxBytes = 256 << 10

func TestConformance(t *testing.T) {
	addr := testCluster(t)
	maxBytes := strconv.Itoa(topicMaxBytes)
	transporttest.Run(t, transporttest.Broker{
		Name: "kafka",
		Addr: addr,
		// The outage cases pass a proxy's address: the client must dial
		// it instead of the address the broker advertises.
		NewPublisher: func(t *testing.T, addr string) transport.Publisher {
			return newPublisher(t, addr, nil)
		},
		NewSubscriber: func(t *testing.T, addr string) transport.Subscriber {
			return newSubscriber(t, addr, nil)
		},
		NewDest: func(t *testing.T) string {
			return newTopic(t, 4, map[string]*string{"max.message.bytes": &maxBytes})
		},
		Ordered:    true,
		Groups:     true,
		Persistent: true,
		// The session timeout of testSubscriberOptions, and a rebalance.
		Redelivery: 5 * time.Second,
		Reject: func(t *testing.T, dest string) (*transport.Message, string) {
			return &transport.Message{ID: "too-large", Topic: dest, Key: "k", Type: "Big",
				Payload: bytes.Repeat([]byte("x"), topicMaxBytes+1)}, "MESSAGE_TOO_LARGE"
		},
	})
}
