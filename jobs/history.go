package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
)

// runner is the relay's destination for a Client's jobs: it runs each
// job's worker (Workers) and stores what the attempt leaves behind: the
// output of one that succeeds, the error of one that fails.
type runner struct {
	workers *Workers
	tables  *tables
	// keepOutput is false when completed jobs are deleted at once
	// (negative Retention): their output would have no job to read it by.
	keepOutput bool
	log        *slog.Logger
}

// Deliver runs the job of r and returns the error that decides its
// outcome, as Workers.Deliver does.
func (d *runner) Deliver(ctx context.Context, r *ferry.Record) error {
	run := &attempt{rec: r, tables: d.tables}
	err := d.workers.deliver(ctx, r, run)
	if err == nil && ctx.Err() != nil {
		// The relay fails an attempt that outlived its deadline even if
		// the worker returned nil; so does the history, and the output of
		// an attempt that failed is not stored.
		err = ctx.Err()
	}
	if out := run.result(); err == nil && out != nil && d.keepOutput {
		// Stored before the relay records the job DONE: a reader who sees
		// it completed finds its output.
		if werr := d.tables.store(ctx, d.tables.setOutput, r, out); werr != nil {
			err = fmt.Errorf("jobs: store the output of %q job %s: %w; the job runs again", r.Type, r.ID, werr)
		}
	}
	if err != nil {
		d.record(ctx, r, err)
	}
	return err
}

// recordTimeout bounds the write of a failed attempt's error.
const recordTimeout = 5 * time.Second

// record adds the error of r's failed attempt to the history. A failure
// to record is logged: the job goes on as the relay decides, with its
// last error in the outbox row.
func (d *runner) record(ctx context.Context, r *ferry.Record, jobErr error) {
	// The attempt's context may be what failed it (a timeout, a
	// shutdown), so the write has one of its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	attempt := r.Attempts + 1
	if _, err := d.tables.db.ExecContext(ctx, d.tables.addError, r.Seq, r.ID, attempt, errorText(jobErr.Error())); err != nil {
		d.log.Warn("jobs: the error of a failed attempt is not in the job's history; the job is retried or dead as usual",
			"kind", r.Type, "id", r.ID, "attempt", attempt, "job_error", jobErr, "err", err)
	}
}

// maxErrorText bounds an error in the history, in bytes.
const maxErrorText = 4000

// errorText makes s storable in every database's text column: valid
// UTF-8 without NUL (PostgreSQL refuses both), at most maxErrorText bytes.
func errorText(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= maxErrorText {
		return s
	}
	cut := maxErrorText
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}
