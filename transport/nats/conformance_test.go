package nats

import (
	"bytes"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Broker{
		Name: "nats",
		Addr: testAddr,
		NewPublisher: func(t *testing.T, addr string) transport.Publisher {
			p, err := NewPublisher(testURL(addr), PublisherOptions{ConnOptions: testConn()})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		NewSubscriber: func(t *testing.T, addr string) transport.Subscriber {
			s, err := NewSubscriber(testURL(addr), SubscriberOptions{ConnOptions: testConn(), AckWait: time.Second, Batch: 10, PullExpiry: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		NewDest:    func(t *testing.T) string { return newStream(t).subject },
		Ordered:    true,
		Groups:     true,
		Persistent: true,
		Redelivery: 2 * time.Second,
		Reject: func(t *testing.T, dest string) (*transport.Message, string) {
			// newStream's streams take messages up to 64 KiB.
			return &transport.Message{ID: "too-large", Topic: dest, Type: "Big", Payload: bytes.Repeat([]byte("x"), 100<<10)},
				"message size exceeds maximum allowed"
		},
	})
}
