package inbox

import (
	"context"
	"fmt"
	"time"
)

// Cleanup deletes the records older than the retention and returns how
// many it deleted. It deletes in small batches, each its own statement, so
// that it never holds locks long enough to delay the handlers.
func (i *Inbox) Cleanup(ctx context.Context) (int64, error) {
	var total int64
	for {
		res, err := i.db.ExecContext(ctx, i.d.cleanup, i.d.cleanupArgs(i.retention, i.batch)...)
		if err != nil {
			return total, fmt.Errorf("inbox: clean up %s: %w", i.table, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("inbox: clean up %s: %w", i.table, err)
		}
		total += n
		if n < int64(i.batch) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("inbox: clean up %s: %w", i.table, err)
		}
	}
}

// Run calls Cleanup now and then every hundredth of the retention (at
// least a minute, at most an hour) until ctx ends, and then returns nil.
// A failed cleanup is logged and tried again at the next interval. Run it
// in every consumer process, or in one: concurrent cleanups are safe.
func (i *Inbox) Run(ctx context.Context) error {
	t := time.NewTicker(i.every)
	defer t.Stop()
	for {
		n, err := i.Cleanup(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			i.log.WarnContext(ctx, "inbox: cleanup failed; will try again", "table", i.table, "error", err, "retry_in", i.every)
		case n > 0:
			i.log.DebugContext(ctx, "inbox: deleted expired records", "table", i.table, "deleted", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
