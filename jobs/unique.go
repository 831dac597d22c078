package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry"
)

// execer runs a statement in the caller's transaction, whichever driver
// it comes from.
type execer interface {
	exec(ctx context.Context, query string, args ...any) error
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) exec(ctx context.Context, query string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, query, args...)
	return err
}

type pgxTx struct{ tx pgx.Tx }

func (t pgxTx) exec(ctx context.Context, query string, args ...any) error {
	_, err := t.tx.Exec(ctx, query, args...)
	return err
}

// rewriter is implemented by ferry's SQL stores: it names the table and
// numbers placeholders for the dialect.
type rewriter interface{ Q(query string) string }

// freeUniqueIDs makes the earlier jobs that share a unique id with msgs
// but are in a state their Unique.States does not list step aside, in
// the inserting transaction: they take the id "<id>~<random>", so the
// insert that follows takes the id. Concurrent inserts of the same job
// still make one: the rename locks the earlier row, and the outbox skips
// an id that is taken.
func freeUniqueIDs(ctx context.Context, store ferry.Store, tx execer, msgs []ferry.Message, params []InsertParams) error {
	for i, p := range params {
		if p.Opts == nil || p.Opts.Unique == nil || len(p.Opts.Unique.States) == 0 {
			continue
		}
		st, ok := store.(rewriter)
		if !ok {
			return fmt.Errorf("jobs: Unique.States needs one of ferry's SQL stores, not %T", store)
		}
		var free []any
		for _, s := range []ferry.Status{ferry.StatusWaiting, ferry.StatusDone, ferry.StatusFailed, ferry.StatusExcluded} {
			if !slices.Contains(p.Opts.Unique.States, s) {
				free = append(free, string(s))
			}
		}
		if len(free) == 0 {
			continue
		}
		query := st.Q(`UPDATE {{t}} SET message_id = ? WHERE message_id = ? AND status IN (` +
			strings.TrimSuffix(strings.Repeat("?, ", len(free)), ", ") + `)`)
		id := msgs[i].ID
		args := append([]any{id + "~" + ferry.NewID(), id}, free...)
		if err := tx.exec(ctx, query, args...); err != nil {
			return fmt.Errorf("jobs: unique %q job %s: free the id of the earlier job: %w", msgs[i].Type, id, err)
		}
	}
	return nil
}
