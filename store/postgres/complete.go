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
func (s *Store) Complete(ctx context.Context, outcomes []ferry.Outcome) error {
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
