package postgres

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry"
)

// waitingKeysSQL looks each key up on its own in the index of keyed
// WAITING rows, (lane, msg_key, id), and merges the results. Written as
// the shared "msg_key IN (...) ORDER BY id LIMIT n", PostgreSQL prefers to
// walk the lane's index of WAITING rows in id order up to upToSeq and
// filter by key: a walk over the whole backlog behind the relay's cursor,
// done for every batch it reads. The lateral join leaves it no such plan.
// The keys are compared in the "C" collation of the msg_key column, which
// the index is built with.
const waitingKeysSQL = `SELECT w.msg_key, w.id
	FROM unnest(?::text[]) AS k(msg_key)
	CROSS JOIN LATERAL (
		SELECT t.msg_key, t.id FROM {{t}} t
		WHERE t.lane = ? AND t.status = 'WAITING' AND t.msg_key = k.msg_key COLLATE "C" AND t.id <= ?
			AND (t.available_at <= now() OR t.fail_count > 0)
		ORDER BY t.id LIMIT ?
	) w
	ORDER BY w.id LIMIT ?`

// WaitingKeys returns WAITING messages of lane with one of keys, up to
// upToSeq, as (key, Seq) pairs in Seq order, at most limit of them.
func (s *Store) WaitingKeys(ctx context.Context, lane string, keys []string, upToSeq int64, limit int) ([]ferry.KeySeq, error) {
	if len(keys) == 0 || limit <= 0 {
		return nil, nil
	}
	rows, err := s.DB.QueryContext(ctx, s.waitingKeys, keys, lane, upToSeq, limit, limit)
	if err != nil {
		return nil, fmt.Errorf("ferry: waiting messages of %d keys in lane %s: %w", len(keys), lane, err)
	}
	defer rows.Close()
	var out []ferry.KeySeq
	for rows.Next() {
		var ks ferry.KeySeq
		if err := rows.Scan(&ks.Key, &ks.Seq); err != nil {
			return nil, fmt.Errorf("ferry: waiting messages in lane %s: %w", lane, err)
		}
		out = append(out, ks)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ferry: waiting messages in lane %s: %w", lane, err)
	}
	return out, nil
}
