package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/nats"
)

// natsTarget publishes to a JetStream subject, in a file stream of its own
// that prepare creates. Raw is nats.go alone: PublishMsgAsync of the same
// messages (the headers ferry writes, and Nats-Msg-Id) from one goroutine
// with up to rawNATSPending acknowledgements outstanding, then
// PublishAsyncComplete: every message stored, as ferry's Publish waits
// for.
func natsTarget() brokerTarget {
	return brokerTarget{
		defaultURL: "nats://127.0.0.1:4222",
		start: func(_ context.Context, url string) (string, func(), error) {
			return url, func() {}, nil
		},
		prepare: prepareNATS,
		subscriber: func(_ context.Context, url string) (transport.Subscriber, error) {
			return nats.NewSubscriber(url, nats.SubscriberOptions{})
		},
		publisher: func(_ context.Context, url string) (transport.Publisher, error) {
			return nats.NewPublisher(url, nats.PublisherOptions{})
		},
		raw: rawNATS,
	}
}

// rawNATSPending is the raw client's bound on messages awaiting their
// acknowledgement: the same as ferry's publisher's default MaxPending.
const rawNATSPending = 4096

// natsBenchStream names the stream that holds dest.
func natsBenchStream(dest string) string {
	return "ferrybench_" + strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || r <= ' ' {
			return '_'
		}
		return r
	}, dest)
}

func natsJetStream(url string, opts ...jetstream.JetStreamOpt) (*natsgo.Conn, jetstream.JetStream, error) {
	nc, err := natsgo.Connect(url, natsgo.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("nats: connect to %s: %w", url, err)
	}
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("nats: %w", err)
	}
	return nc, js, nil
}

// prepareNATS creates a file stream for dest, as durable as ferry asks
// for (each message stored before it is acknowledged), after deleting
// one an interrupted run left.
func prepareNATS(ctx context.Context, url, dest string) (func(), error) {
	nc, js, err := natsJetStream(url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	name := natsBenchStream(dest)
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("nats: delete stream %s before the run: %w", name, err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     name,
		Subjects: []string{dest},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: create stream %s for %q: %w", name, dest, err)
	}
	return func() {
		nc, js, err := natsJetStream(url)
		if err != nil {
			return
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		js.DeleteStream(ctx, name)
	}, nil
}

func rawNATS(ctx context.Context, url, dest string, msgs []*transport.Message) error {
	var (
		mu       sync.Mutex
		firstErr error
	)
	nc, js, err := natsJetStream(url,
		jetstream.WithPublishAsyncMaxPending(rawNATSPending),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *natsgo.Msg, err error) {
			mu.Lock()
			defer mu.Unlock()
			if firstErr == nil {
				firstErr = fmt.Errorf("nats: message %s: %w", m.Header.Get(jetstream.MsgIDHeader), err)
			}
		}),
	)
	if err != nil {
		return err
	}
	defer nc.Close()
	enc := transport.Encoding{CEPrefix: "ce-"}
	for _, m := range msgs {
		msg := &natsgo.Msg{Subject: dest, Data: m.Payload, Header: make(natsgo.Header, len(m.Headers)+6)}
		enc.Headers(m, func(name, value string) { msg.Header[name] = []string{value} })
		msg.Header[jetstream.MsgIDHeader] = []string{m.ID}
		for {
			_, err := js.PublishMsgAsync(msg)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return fmt.Errorf("nats: publish message %s: %w", m.ID, err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}
