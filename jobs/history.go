package jobs

import (
	"context"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
)

// recordTimeout bounds the write of a failed attempt's error.
const recordTimeout = 5 * time.Second

// record adds the error of r's failed attempt to the history. A failure
// to record is logged: the job goes on as the relay decides, with its
// last error in the outbox row.
func (ru *runner) record(ctx context.Context, r *ferry.Record, jobErr error) {
	// The attempt's context may be what failed it (a timeout, a
	// shutdown), so the write has one of its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	attempt := r.Attempts + 1
	if _, err := ru.tables.db.ExecContext(ctx, ru.tables.addError, r.Seq, r.ID, attempt, errorText(jobErr.Error())); err != nil {
		ru.log.Warn("jobs: the error of a failed attempt is not in the job's history; the job is retried or dead as usual",
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
