package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/kafka"
)

// kafkaBenchPartitions is how many partitions prepare gives a topic: keys
// spread over them, as on a production topic.
const kafkaBenchPartitions = 8

// kafkaTarget publishes to a topic of its own, on the cluster --broker
// names (host:port, several separated by commas) or, by default, on an
// in-process kfake cluster of one broker that start runs. Raw is franz-go
// alone: Produce with a promise for every message (acks from all
// in-sync replicas, idempotent, as ferry's publisher), then waiting for
// every promise.
func kafkaTarget() brokerTarget {
	return brokerTarget{
		defaultURL: "",
		start:      startKafka,
		prepare:    prepareKafka,
		subscriber: func(_ context.Context, url string) (transport.Subscriber, error) {
			return kafka.NewSubscriber(kafka.SubscriberOptions{Brokers: kafka.ParseBrokers(url)})
		},
		onePartition: func(ctx context.Context, url, dest string) (func(), error) {
			return prepareKafkaTopic(ctx, url, dest, 1)
		},
		publisher: func(_ context.Context, url string) (transport.Publisher, error) {
			return kafka.NewPublisher(kafka.PublisherOptions{Brokers: kafka.ParseBrokers(url)})
		},
		raw: rawKafka,
	}
}

// startKafka runs a kfake cluster when no cluster is named.
func startKafka(_ context.Context, url string) (string, func(), error) {
	if url != "" {
		return url, func() {}, nil
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return "", nil, fmt.Errorf("kafka: start kfake: %w", err)
	}
	return c.ListenAddrs()[0], c.Close, nil
}

func kafkaAdmin(url string) (*kadm.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ParseBrokers(url)...))
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return kadm.NewClient(cl), nil
}

// prepareKafka creates the topic dest with kafkaBenchPartitions
// partitions, after deleting one an interrupted run left.
func prepareKafka(ctx context.Context, url, dest string) (func(), error) {
	return prepareKafkaTopic(ctx, url, dest, kafkaBenchPartitions)
}

// prepareKafkaTopic creates the topic dest with the given partitions.
func prepareKafkaTopic(ctx context.Context, url, dest string, partitions int32) (func(), error) {
	adm, err := kafkaAdmin(url)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	create := func() error {
		resp, err := adm.CreateTopic(ctx, partitions, -1, nil, dest)
		if err == nil {
			err = resp.Err
		}
		return err
	}
	err = create()
	if errors.Is(err, kerr.TopicAlreadyExists) {
		if _, err := adm.DeleteTopics(ctx, dest); err != nil {
			return nil, fmt.Errorf("kafka: delete topic %s before the run: %w", dest, err)
		}
		for range 50 { // deletion completes in the background
			if err = create(); !errors.Is(err, kerr.TopicAlreadyExists) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: create topic %s: %w", dest, err)
	}
	return func() {
		adm, err := kafkaAdmin(url)
		if err != nil {
			return
		}
		defer adm.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		adm.DeleteTopics(ctx, dest)
	}, nil
}

func rawKafka(ctx context.Context, url, dest string, msgs []*transport.Message) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(kafka.ParseBrokers(url)...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // and idempotent, the default
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("kafka: record at %d: %w", r.Offset, err)
			}
			mu.Unlock()
		}
		wg.Done()
	}
	enc := transport.Encoding{CEPrefix: kafka.CEPrefix}
	for _, m := range msgs {
		r := &kgo.Record{Topic: dest, Value: m.Payload, Headers: make([]kgo.RecordHeader, 0, len(m.Headers)+5)}
		if m.Key != "" {
			r.Key = []byte(m.Key)
		}
		enc.Headers(m, func(name, value string) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: name, Value: []byte(value)})
		})
		wg.Add(1)
		cl.Produce(ctx, r, promise)
	}
	wg.Wait()
	return firstErr
}
