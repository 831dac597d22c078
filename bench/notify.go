package bench

import (
	"context"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
)

// noticeTracker times PostgreSQL's notifications of the online lane's
// commits, for the notify baseline (SystemNotify). A notification names
// the Seq of the row its transaction wrote, and each online transaction
// writes one message, so a notification is one message's; deliveries tell
// which message has which Seq, and the producer's tracker when it
// committed.
type noticeTracker struct {
	clock   clock
	mu      sync.Mutex
	arrived map[int64]time.Duration // by Seq: when its notification came
	ids     map[int64]string        // by Seq: the message id, from deliveries
}

func newNoticeTracker(c clock) *noticeTracker {
	return &noticeTracker{clock: c, arrived: map[int64]time.Duration{}, ids: map[int64]string{}}
}

// listen times the online lane's notifications until ctx is done, on a
// connection of its own.
func (n *noticeTracker) listen(ctx context.Context, l ferry.Notifier) error {
	return l.Listen(ctx, func(lane string, seq int64) {
		if lane != laneOnline || seq <= 0 {
			return
		}
		at := n.clock.now()
		n.mu.Lock()
		if _, seen := n.arrived[seq]; !seen {
			n.arrived[seq] = at
		}
		n.mu.Unlock()
	})
}

// delivered records that the message with id has Seq seq.
func (n *noticeTracker) delivered(id string, seq int64) {
	n.mu.Lock()
	n.ids[seq] = id
	n.mu.Unlock()
}

// window returns the commit-to-notification latencies of the messages
// committed in [from, to). A notification that came before the producer
// heard of its commit counts as zero, as a delivery does in tracker.
func (n *noticeTracker) window(commits *tracker, from, to time.Duration) []time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	var lat []time.Duration
	for seq, at := range n.arrived {
		id, ok := n.ids[seq]
		if !ok {
			continue
		}
		if c, ok := commits.commitOf(id); ok && c >= from && c < to {
			lat = append(lat, max(0, at-c))
		}
	}
	return lat
}
