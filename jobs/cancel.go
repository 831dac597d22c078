package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry"
)

// ErrCancelled is the cause of a running job's context when the job was
// cancelled (context.Cause tells it apart from a timeout).
var ErrCancelled = errors.New("jobs: the job was cancelled")

// NotCancellableError is Cancel's error for a job that is not waiting or
// running: finished, dead, cancelled already, or unknown (no job has the
// id, though another outbox message may: Cancel leaves those alone).
type NotCancellableError struct {
	ID     string
	Status ferry.Status // "" when there is no such job
}

func (e *NotCancellableError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("jobs: cancel %s: there is no such job", e.ID)
	}
	return fmt.Sprintf("jobs: cancel %s: the job is %s, not waiting or running", e.ID, e.Status)
}

// cancelCheck is how often a client looks for cancelled jobs among those
// it runs.
const cancelCheck = time.Second

// Cancel cancels the job with id, from any process: a job still waiting
// never runs; a running one has its context cancelled (with cause
// ErrCancelled) within about a second by the process running it. The job
// ends EXCLUDED either way.
func (c *Client) Cancel(ctx context.Context, id string) error {
	n, err := c.store.Exclude(ctx, ferry.Filter{IDs: []string{id}, Topic: Topic, Status: ferry.StatusWaiting})
	if err != nil {
		return fmt.Errorf("jobs: cancel %s: %w", id, err)
	}
	if n == 1 {
		c.workers.cancel(id) // at once if it runs here
		return nil
	}
	recs, err := c.store.List(ctx, ferry.Filter{IDs: []string{id}, Topic: Topic})
	if err != nil {
		return fmt.Errorf("jobs: cancel %s: %w", id, err)
	}
	if len(recs) == 0 {
		return &NotCancellableError{ID: id}
	}
	return &NotCancellableError{ID: id, Status: recs[0].Status}
}

// watchCancels cancels the running jobs of this process that were
// cancelled elsewhere, until ctx ends.
func (c *Client) watchCancels(ctx context.Context) {
	t := time.NewTicker(cancelCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids := c.workers.runningIDs()
		if len(ids) == 0 {
			continue
		}
		recs, err := c.store.List(ctx, ferry.Filter{IDs: ids, Status: ferry.StatusExcluded, Limit: len(ids)})
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("jobs: look for cancelled jobs", "err", err)
			}
			continue
		}
		for _, r := range recs {
			c.workers.cancel(r.ID)
		}
	}
}
