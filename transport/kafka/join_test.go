package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// A group the broker will not let the subscriber join is an error from
// Next, not a subscription that waits for ever.
func TestUnjoinableGroupFailsNext(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"), kfake.GroupMinSessionTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, err := NewSubscriber(SubscriberOptions{Brokers: c.ListenAddrs(), SessionTimeout: time.Second, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sn, err := sub.Subscribe(ctx, "orders", "billing")
	if err == nil {
		defer sn.Close()
		_, err = sn.Next(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "INVALID_SESSION_TIMEOUT") || !strings.Contains(err.Error(), "SessionTimeout") {
		t.Fatalf("err = %v; want the session timeout refused, naming the option", err)
	}
}
