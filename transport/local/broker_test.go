package local_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/local"
	"github.com/ferry-dev/ferry/transport/transporttest"
)

func TestConformance(t *testing.T) {
	b := local.NewBroker()
	var n atomic.Int64
	transporttest.Run(t, transporttest.Broker{
		Name:          "local",
		NewPublisher:  func(*testing.T, string) transport.Publisher { return b.Publisher() },
		NewSubscriber: func(*testing.T, string) transport.Subscriber { return b.Subscriber() },
		NewDest:       func(t *testing.T) string { return fmt.Sprintf("dest-%d", n.Add(1)) },
		Ordered:       true,
		Groups:        true,
		Persistent:    true,
		Redelivery:    time.Second,
	})
}
