package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// listenCheck is how long Listen waits for a notification before it
// checks the connection with a round trip. A connection whose server went
// away without closing it, or that a firewall dropped for being idle,
// would otherwise wait for notifications that never come; the round trip
// also keeps such firewalls from timing it out.
const listenCheck = 30 * time.Second

// Listen calls wake with a lane's name whenever a transaction that wrote
// WAITING messages of that lane commits, or a person moves messages back
// to WAITING (ferry retry), until ctx is done. Triggers on the table send
// the notifications, so rows that other programs insert with plain SQL
// wake the relay too. A transaction notifies each lane it wrote to once
// however many rows it wrote, and tells the lowest id it wrote there
// (wake's seq); only a transaction that alternates between lanes
// statement by statement notifies a lane again at each switch. Retried
// messages notify each lane once per transaction, with seq 0.
//
// Listen holds a connection of its own, outside the store's pool, for as
// long as it runs. It returns nil when ctx is done, and an error when the
// connection cannot be opened or fails; notifications sent while nobody
// listens are lost, so the caller should listen again after a pause and
// keep polling now and then. wake runs on Listen's goroutine and should
// return quickly: PostgreSQL queues notifications for a slow listener, and
// writers fail once that queue is full.
func (s *Store) Listen(ctx context.Context, wake func(lane string, seq int64)) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.Copy())
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return redacted(fmt.Errorf("ferry: postgres: listen for %s: connect to %s: %w", s.Table, describe(s.cfg), err))
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(ctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ferry: postgres: listen on channel %s for %s: %w", s.channel, s.Table, err)
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenCheck)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			wake(parseWake(n.Payload))
		case ctx.Err() != nil:
			return nil
		case pgconn.Timeout(err) && !conn.IsClosed():
			// pgx's deadline-based cancellation leaves the connection
			// usable after a timed-out wait, so it can be checked.
			pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = conn.Ping(pingCtx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("ferry: postgres: listen for %s: the connection does not answer: %w", s.Table, err)
			}
		default:
			return fmt.Errorf("ferry: postgres: listen for %s: %w", s.Table, err)
		}
	}
}

// parseWake reads a notification's payload: "<id> <lane>", or the lane
// alone as schema version 2 sends it.
func parseWake(payload string) (lane string, seq int64) {
	id, lane, ok := strings.Cut(payload, " ")
	if !ok {
		return payload, 0
	}
	seq, err := strconv.ParseInt(id, 10, 64)
	if err != nil || seq < -1 {
		return payload, 0
	}
	return lane, seq
}

// AnnouncePolling records in the table's _polled table that relays read
// lane every few milliseconds for the next d, which the wake-up trigger
// reads before it notifies (schema version 4). The times are the
// database's. With tell, a notification "-1 <lane>" goes to the listening
// relays in the same transaction.
func (s *Store) AnnouncePolling(ctx context.Context, lane string, d time.Duration, tell bool) (time.Duration, error) {
	if len(lane) >= 7900 { // the trigger does not notify such a lane anyway
		return 0, fmt.Errorf("ferry: postgres: lane %.40s...: too long for a notification, so it has none to take off", lane)
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("ferry: postgres: announce polling of lane %s: %w", lane, err)
	}
	defer tx.Rollback()
	var left float64
	err = tx.QueryRowContext(ctx, s.Q(`INSERT INTO {{t}}_polled AS p (lane, until) VALUES (?, clock_timestamp() + ?::float8 * interval '1 second')
		ON CONFLICT (lane) DO UPDATE SET until = greatest(p.until, EXCLUDED.until)
		RETURNING extract(epoch FROM until - clock_timestamp())::float8`), lane, d.Seconds()).Scan(&left)
	if err == nil && tell {
		_, err = tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, s.channel, "-1 "+lane)
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		return 0, fmt.Errorf("ferry: postgres: announce polling of lane %s: %w", lane, err)
	}
	return seconds(left), nil
}

// Polled returns how long the announcement of AnnouncePolling for lane
// still holds.
func (s *Store) Polled(ctx context.Context, lane string) (time.Duration, error) {
	var left float64
	err := s.DB.QueryRowContext(ctx, s.Q(`SELECT COALESCE(max(extract(epoch FROM until - clock_timestamp())), 0)::float8
		FROM {{t}}_polled WHERE lane = ?`), lane).Scan(&left)
	if err != nil {
		return 0, fmt.Errorf("ferry: postgres: read whether lane %s is polled: %w", lane, err)
	}
	return seconds(left), nil
}

// seconds converts s to a duration, 0 if negative.
func seconds(s float64) time.Duration { return max(0, time.Duration(s*float64(time.Second))) }

// Stats is sqlstore's Stats, with the lanes relays poll marked Polled.
func (s *Store) Stats(ctx context.Context) ([]ferry.LaneStats, error) {
	stats, err := s.Store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, s.Q(`SELECT lane FROM {{t}}_polled WHERE until > clock_timestamp()`))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return stats, nil // a schema before version 4: nothing is polled
	}
	if err != nil {
		return nil, fmt.Errorf("ferry: stats: read the polled lanes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var lane string
		if err := rows.Scan(&lane); err != nil {
			return nil, fmt.Errorf("ferry: stats: read the polled lanes: %w", err)
		}
		for i := range stats {
			if stats[i].Lane == lane {
				stats[i].Polled = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ferry: stats: read the polled lanes: %w", err)
	}
	return stats, nil
}
