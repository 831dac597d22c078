package bench

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry"
)

// FIFO baseline settings: the seeds' relay.
const (
	fifoPage = 100
	fifoPoll = 100 * time.Millisecond
)

// fifo is the baseline the flood benchmark measures ferry against: the
// outbox relay of the seeds, as a team first writes it. One goroutine
// polls one FIFO over the whole outbox,
//
//	SELECT ... FROM outbox WHERE status = 'WAITING' ORDER BY id LIMIT 100
//
// delivers the rows one by one in that order, and marks each DONE by id
// with its own UPDATE. When a poll returns a full page it polls again at
// once; otherwise it sleeps 100 ms. It uses plain database/sql on the
// outbox table, nothing of ferry's relay, and gets an index made for its
// query, so that it is measured at its best rather than as a straw man.
type fifo struct {
	db   *sql.DB
	sel  string
	upd  string
	dest ferry.Destination
}

// newFIFO prepares the baseline on tb's table: it adds the index its
// query needs.
func newFIFO(ctx context.Context, tb *testbed, dest ferry.Destination) (*fifo, error) {
	index := fmt.Sprintf("CREATE INDEX %[1]s_fifo ON %[1]s (id) WHERE status = 'WAITING'", tb.table)
	if tb.dialect == "mysql" { // no partial indexes
		index = fmt.Sprintf("CREATE INDEX %[1]s_fifo ON %[1]s (status, id)", tb.table)
	}
	if _, err := tb.db.ExecContext(ctx, index); err != nil {
		return nil, fmt.Errorf("fifo baseline: create its index: %w", err)
	}
	return &fifo{
		db: tb.relay.(sqlHandle).SQLDB(), // connections of its own, as ferry's relay has
		sel: fmt.Sprintf("SELECT id, message_id, lane, topic, msg_key, payload FROM %s WHERE status = 'WAITING' ORDER BY id LIMIT %d",
			tb.table, fifoPage),
		upd:  fmt.Sprintf("UPDATE %s SET status = 'DONE' WHERE id = %s", tb.table, tb.ph(1)),
		dest: dest,
	}, nil
}

// run relays until ctx is done. It returns nil then, or the first
// database error.
func (f *fifo) run(ctx context.Context) error {
	for ctx.Err() == nil {
		recs, err := f.poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for i := range recs {
			if err := f.dest.Deliver(ctx, &recs[i]); err != nil {
				break // leave it WAITING: the next poll starts with it again
			}
			if _, err := f.db.ExecContext(ctx, f.upd, recs[i].Seq); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("fifo baseline: mark message %d DONE: %w", recs[i].Seq, err)
			}
		}
		if len(recs) < fifoPage {
			select {
			case <-ctx.Done():
			case <-time.After(fifoPoll):
			}
		}
	}
	return nil
}

// poll reads the next page of the FIFO.
func (f *fifo) poll(ctx context.Context) ([]ferry.Record, error) {
	rows, err := f.db.QueryContext(ctx, f.sel)
	if err != nil {
		return nil, fmt.Errorf("fifo baseline: poll: %w", err)
	}
	defer rows.Close()
	recs := make([]ferry.Record, 0, fifoPage)
	for rows.Next() {
		var (
			r   ferry.Record
			key sql.NullString
		)
		if err := rows.Scan(&r.Seq, &r.ID, &r.Lane, &r.Topic, &key, &r.Payload); err != nil {
			return nil, fmt.Errorf("fifo baseline: read a row: %w", err)
		}
		r.Key, r.Status = key.String, ferry.StatusWaiting
		recs = append(recs, r)
	}
	return recs, rows.Err()
}
