package jobs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// A queue with several priority levels is one relay lane per level: level
// 1 is the lane named like the queue, level n the sub-lane "queue/pn".
// The levels share the queue's workers through a relay pool in which a
// lower level number always goes first, and pausing the queue's lane
// pauses its sub-lanes.

// laneOf returns the lane of priority level p (1 or more) of queue.
func laneOf(queue string, p int) string {
	if p <= 1 {
		return queue
	}
	return queue + "/p" + strconv.Itoa(p)
}

// queueOf returns the queue of a lane.
func queueOf(lane string) string {
	if i := strings.LastIndex(lane, "/p"); i >= 0 {
		if p, err := strconv.Atoi(lane[i+2:]); err == nil && p > 1 {
			return lane[:i]
		}
	}
	return lane
}

// priorityLane returns the lane of a job inserted into queue with
// priority p, checking p against the queue's levels when they are known
// (levels 0: inserted without a client).
func priorityLane(queue string, p, levels int) (string, error) {
	if p < 0 || (levels > 0 && p > levels) {
		return "", fmt.Errorf("jobs: priority %d in queue %q: the queue's priorities are 1 (first) to %d; raise Queue.Priorities to use more", p, queue, max(levels, 1))
	}
	return laneOf(queue, p), nil
}

// queuePool is the relay pool of a queue that has priority levels but
// shares no pool with other queues.
func queuePool(queue string) string { return "queue " + queue }

// maxLevels bounds Queue.Priorities, so that a queue's Priority outranks
// every level of the queues after it in the pool.
const maxLevels = 1000

// priorityOf returns the priority level of a lane's jobs.
func priorityOf(lane string) int {
	if i := strings.LastIndex(lane, "/p"); i >= 0 {
		if p, err := strconv.Atoi(lane[i+2:]); err == nil && p > 1 {
			return p
		}
	}
	return 1
}

// PauseQueue pauses a queue in every process: no job of it starts until
// ResumeQueue (jobs running finish). It is stored in the database, so
// ferry pause QUEUE and ferry resume QUEUE do the same.
func (c *Client) PauseQueue(ctx context.Context, queue string) error {
	if err := c.knownQueue(queue); err != nil {
		return err
	}
	return c.store.Pause(ctx, queue)
}

// ResumeQueue resumes a paused queue: its jobs start again within about
// a second in every process that runs it.
func (c *Client) ResumeQueue(ctx context.Context, queue string) error {
	if err := c.knownQueue(queue); err != nil {
		return err
	}
	return c.store.Resume(ctx, queue)
}

func (c *Client) knownQueue(queue string) error {
	if _, ok := c.queues[queue]; !ok {
		return fmt.Errorf("jobs: no queue %q in this client's Config.Queues (it has %s)", queue, strings.Join(slices.Sorted(maps.Keys(c.queues)), ", "))
	}
	return nil
}
