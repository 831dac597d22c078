package postgres

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry"
)

// Complete records delivery outcomes without waiting for the write-ahead
// log to reach disk (synchronous_commit off, for this transaction only).
// Waiting for the flush costs each batch a few milliseconds of the relay's
// throughput, and what it protects is cheap to lose: if the server crashes
// within the next fraction of a second, the outcomes written in that
// window are lost and those messages are delivered again — at least once,
// as promised, with their message ids for the consumer to deduplicate.
// Messages themselves are written by the producer's own transaction,
// whose durability this does not touch.
//
// The common case, a batch of deliveries and nothing else, is one
// statement and one round trip: the setting is made by set_config inside
// it, local to its own implicit transaction.
func (s *Store) Complete(ctx context.Context, outcomes []ferry.Outcome) error {
	if seqs, del, ok := onlyDeliveries(outcomes); ok {
		query := s.completeDone
		if del {
			query = s.completeDeleted
		}
		if _, err := s.DB.ExecContext(ctx, query, seqs); err != nil {
			return fmt.Errorf("ferry: record %d deliveries: %w", len(seqs), err)
		}
		return nil
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ferry: record outcomes: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
		return fmt.Errorf("ferry: record outcomes: %w", err)
	}
	if err := s.CompleteWith(ctx, tx, outcomes); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ferry: record outcomes: %w", err)
	}
	return nil
}

// onlyDeliveries returns the Seqs of outcomes if all of them are
// deliveries recorded the same way (all kept DONE, or all deleted).
func onlyDeliveries(outcomes []ferry.Outcome) (seqs []int64, del bool, ok bool) {
	if len(outcomes) == 0 {
		return nil, false, false
	}
	del = outcomes[0].Delete
	seqs = make([]int64, len(outcomes))
	for i, o := range outcomes {
		if o.Status != ferry.StatusDone || o.Delete != del {
			return nil, false, false
		}
		seqs[i] = o.Seq
	}
	return seqs, del, true
}

// completeQueries returns the single statements that record deliveries:
// marked DONE, or deleted. The CTE turns synchronous_commit off for the
// statement's own transaction; the uncorrelated EXISTS makes PostgreSQL
// evaluate it once, before any row changes.
//
// The rows are found by primary key alone. The test of their status
// appends the empty string to the column, so that the planner cannot
// match it with the predicate of the partial index of WAITING rows: when
// it can, and its
// statistics (never analyzed, or analyzed while the lane was quiet)
// promise few WAITING rows, it ANDs the whole of that index into every
// batch. Measured on a backlog of a million: 45 ms per batch of 1000
// growing with the backlog, against 5 ms by primary key.
func completeQueries(table string) (done, deleted string) {
	const off = `WITH sync AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))
`
	const where = ` WHERE id = ANY($1::bigint[]) AND status || '' = 'WAITING' AND EXISTS (SELECT 1 FROM sync)`
	return off + `UPDATE ` + table + ` SET status = 'DONE', processed_at = now()` + where,
		off + `DELETE FROM ` + table + where
}
