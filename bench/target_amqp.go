package bench

import (
	"context"
	"errors"
	"fmt"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/amqp"
)

// amqpTarget benchmarks RabbitMQ at a running broker: dest is a durable
// topic exchange with a durable queue bound to it with "#", so every
// message is routed, confirmed once on disk, and kept until the run
// removes both.
func amqpTarget() brokerTarget {
	return brokerTarget{
		defaultURL: "amqp://guest:guest@127.0.0.1:5672/",
		start: func(_ context.Context, url string) (string, func(), error) {
			return url, func() {}, nil
		},
		prepare: amqpPrepare,
		subscriber: func(_ context.Context, url string) (transport.Subscriber, error) {
			return amqp.NewSubscriber(url, amqp.SubscriberOptions{})
		},
		publisher: func(_ context.Context, url string) (transport.Publisher, error) {
			return amqp.NewPublisher(url, amqp.PublisherOptions{})
		},
		raw: amqpRaw,
	}
}

// amqpPrepare declares the exchange dest and a queue of the same name
// bound to it, and returns a function that deletes both.
func amqpPrepare(ctx context.Context, url, dest string) (func(), error) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.ExchangeDeclare(dest, amqp.KindTopic, true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("declare exchange %s: %w", dest, err)
	}
	if _, err := ch.QueueDeclare(dest, true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("declare queue %s: %w", dest, err)
	}
	if err := ch.QueueBind(dest, "#", dest, false, nil); err != nil {
		return nil, fmt.Errorf("bind queue %s: %w", dest, err)
	}
	return func() {
		conn, err := amqp091.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(dest, false, false, false)
			ch.ExchangeDelete(dest, false, false)
		}
	}, nil
}

// amqpRaw publishes msgs with the plain client as ferry's publisher does
// (persistent, mandatory, the same properties and headers, publisher
// confirms) but at the client's best: one channel, every message sent
// before waiting for any confirm.
func amqpRaw(ctx context.Context, url, dest string, msgs []*transport.Message) error {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	// Buffered for every confirm, so the client's reader never waits on us.
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, len(msgs)))
	returns := ch.NotifyReturn(make(chan amqp091.Return, 1))

	var enc transport.Encoding
	for _, m := range msgs {
		headers := make(amqp091.Table, len(m.Headers)+5)
		enc.Headers(m, func(name, value string) { headers[name] = value })
		err := ch.PublishWithContext(ctx, dest, m.Topic, true, false, amqp091.Publishing{
			MessageId:    m.ID,
			Type:         m.Type,
			Timestamp:    m.OccurredAt,
			DeliveryMode: amqp091.Persistent,
			Headers:      headers,
			Body:         m.Payload,
		})
		if err != nil {
			return err
		}
	}
	for range msgs {
		select {
		case c, ok := <-confirms:
			if !ok {
				return errors.New("the channel closed before every message was confirmed")
			}
			if !c.Ack {
				return fmt.Errorf("the broker nacked message %d", c.DeliveryTag)
			}
		case r := <-returns:
			return fmt.Errorf("message %s was returned: %s", r.MessageId, r.ReplyText)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
