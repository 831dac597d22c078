package consume

import (
	"context"

	"github.com/ferry-dev/ferry/transport"
)

// Forward returns a handler that publishes each message to dest through
// p: with a webhook publisher, the endpoint of a service in any language
// that handles it (what ferry consume runs). A refusal (a 4xx the
// publisher does not retry) is permanent, so the message goes to the dead
// letters; every other error is retried. A message without a topic of
// its own is sent with its source's.
func Forward(p transport.Publisher, dest string) Handler {
	return HandlerFunc(func(ctx context.Context, m *Message) error {
		msg := m.Message
		if msg.Topic == "" {
			msg.Topic = m.Source
		}
		err := p.Publish(ctx, dest, &msg)
		if transport.IsRejected(err) {
			return Permanent(err)
		}
		return err
	})
}
