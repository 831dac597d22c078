package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The client commits offsets with its member id as metadata and offers no
// way to set it, so the subscription sends OffsetCommit requests of its
// own, under the member id and generation the client joined with: the
// coordinator refuses them from a member that is no longer in the group,
// as it refuses the client's own.

type kmsgOffsetFetchResponse = kmsg.OffsetFetchResponse

// committedOffset is one partition's offset to commit.
type committedOffset struct {
	partition int32
	offset    int64
	epoch     int32
	meta      string
}

// commitOffsets commits offsets of topic for the member. err is a failure
// of the whole request; failed[i] is offsets[i]'s own error, if any.
func commitOffsets(ctx context.Context, cl *kgo.Client, group, member string, generation int32, topic string, id [16]byte, offsets []committedOffset) (failed []error, err error) {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = group
	req.MemberID = member
	req.Generation = generation
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = topic // up to v9
	t.TopicID = id  // v10 and later
	for _, o := range offsets {
		p := kmsg.NewOffsetCommitRequestTopicPartition()
		p.Partition = o.partition
		p.Offset = o.offset
		p.LeaderEpoch = o.epoch
		meta := o.meta
		p.Metadata = &meta
		t.Partitions = append(t.Partitions, p)
	}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("commit offsets: %w", err)
	}
	byPartition := make(map[int32]error)
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				byPartition[rp.Partition] = fmt.Errorf("commit offset of partition %d: %w", rp.Partition, err)
			} else {
				byPartition[rp.Partition] = nil
			}
		}
	}
	failed = make([]error, len(offsets))
	for i, o := range offsets {
		err, answered := byPartition[o.partition]
		if !answered {
			err = fmt.Errorf("commit offset of partition %d: no answer from the coordinator", o.partition)
		}
		if errors.Is(err, kerr.OffsetMetadataTooLarge) {
			// The brokers keep less metadata than maxMetaLen: commit the
			// offset alone; the done records past it will be redone.
			err = errors.Join(err, retryWithoutMeta(ctx, cl, req, o))
		}
		failed[i] = err
	}
	return failed, nil
}

// retryWithoutMeta commits o without its list of done offsets.
func retryWithoutMeta(ctx context.Context, cl *kgo.Client, sent *kmsg.OffsetCommitRequest, o committedOffset) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = sent.Group, sent.MemberID, sent.Generation
	t := sent.Topics[0]
	p := kmsg.NewOffsetCommitRequestTopicPartition()
	p.Partition, p.Offset, p.LeaderEpoch = o.partition, o.offset, o.epoch
	meta := metaPrefix + "-1:"
	p.Metadata = &meta
	t.Partitions = []kmsg.OffsetCommitRequestTopicPartition{p}
	req.Topics = []kmsg.OffsetCommitRequestTopic{t}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachCommitted calls fn for each partition of an OffsetFetch response,
// whichever version answered.
func eachCommitted(resp *kmsg.OffsetFetchResponse, fn func(partition int32, offset int64, meta *string)) {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				fn(p.Partition, p.Offset, p.Metadata)
			}
		}
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode == 0 {
					fn(p.Partition, p.Offset, p.Metadata)
				}
			}
		}
	}
}

// topicID returns the id of topic, which OffsetCommit v10 names topics by.
// Clusters without topic ids answer zeros, which older versions ignore.
func topicID(ctx context.Context, cl *kgo.Client, topic string) ([16]byte, error) {
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return [16]byte{}, fmt.Errorf("look up topic %q: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok {
		return [16]byte{}, fmt.Errorf("look up topic %q: %w", topic, kerr.UnknownTopicOrPartition)
	}
	if d.Err != nil {
		return [16]byte{}, fmt.Errorf("look up topic %q: %w", topic, d.Err)
	}
	return d.ID, nil
}
