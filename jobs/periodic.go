package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// PeriodicJob is a job inserted on a schedule.
//
// Every process running the client schedules it, and each tick's job has
// an id made of the job's name and the tick's time, so the outbox keeps
// one of them: the job runs once per tick however many processes run.
// Ticks that pass while no process runs are skipped, not made up.
type PeriodicJob struct {
	// Name identifies the schedule across processes and restarts.
	// Required; renaming it lets one tick run twice.
	Name string
	// Schedule is a cron expression in robfig/cron's syntax: five fields
	// ("0 2 * * *", 02:00 daily), a descriptor ("@hourly", "@daily"),
	// optionally with a time zone in front ("CRON_TZ=Europe/Paris 0 2 * * *";
	// without one, times are UTC), or "@every 15m", whose ticks are
	// multiples of the period since the Unix epoch.
	Schedule string
	// Args and Opts are the job inserted at each tick (Opts.ScheduledAt
	// and Opts.Unique are set by the schedule).
	Args Args
	Opts *InsertOpts

	sched cron.Schedule
}

// cronParser reads five-field expressions and descriptors, with CRON_TZ.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parse checks p's fields and schedule.
func (p *PeriodicJob) parse(w *Workers) error {
	if p.Name == "" {
		return fmt.Errorf("jobs: a periodic job needs a Name (schedule %q)", p.Schedule)
	}
	if p.Args == nil {
		return fmt.Errorf("jobs: periodic job %q has no Args", p.Name)
	}
	if !w.has(p.Args.Kind()) {
		return fmt.Errorf("periodic job %q: %w", p.Name, &UnknownKindError{Kind: p.Args.Kind()})
	}
	if every, ok := strings.CutPrefix(strings.TrimSpace(p.Schedule), "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(every))
		if err != nil || d < time.Second {
			return fmt.Errorf("jobs: periodic job %q: schedule %q: @every needs a duration of at least 1s, such as @every 15m", p.Name, p.Schedule)
		}
		p.sched = aligned(d)
		return nil
	}
	spec := p.Schedule
	if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
		spec = "CRON_TZ=UTC " + spec
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return fmt.Errorf("jobs: periodic job %q: schedule %q does not parse: %v; use five fields (minute hour day-of-month month day-of-week, such as \"0 2 * * *\"), @hourly, @daily or @every 15m, with CRON_TZ=Area/City in front for a time zone", p.Name, p.Schedule, err)
	}
	p.sched = s
	return nil
}

// schedule inserts p's job at each of its ticks until ctx ends.
func (c *Client) schedule(ctx context.Context, p PeriodicJob) error {
	for {
		tick := p.sched.Next(time.Now())
		if tick.IsZero() {
			return nil // a schedule with no future tick
		}
		// Insert a little ahead of the tick, as a job scheduled for it:
		// the relay starts it on time.
		t := time.NewTimer(max(0, time.Until(tick)-time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := c.insertTick(ctx, p, tick); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Error("jobs: periodic job not inserted; the next tick is tried", "job", p.Name, "tick", tick, "err", err)
		}
		// Past this tick before computing the next.
		if wait := time.Until(tick); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	}
}

// insertTick inserts p's job for tick, once across processes.
func (c *Client) insertTick(ctx context.Context, p PeriodicJob, tick time.Time) error {
	opts := InsertOpts{}
	if p.Opts != nil {
		opts = *p.Opts
	}
	opts.ScheduledAt = tick
	opts.Unique = nil
	msgs, err := c.messages([]InsertParams{{Args: p.Args, Opts: &opts}})
	if err != nil {
		return err
	}
	msgs[0].ID = "periodic:" + p.Name + ":" + tick.UTC().Format(time.RFC3339)
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := c.outbox.Write(ctx, tx, msgs...); err != nil {
		return err
	}
	return tx.Commit()
}

// aligned is an @every schedule whose ticks are multiples of the period
// since the Unix epoch, so that every process computes the same ticks
// (robfig/cron's counts from when each process started).
type aligned time.Duration

func (a aligned) Next(t time.Time) time.Time {
	d := time.Duration(a)
	return t.Truncate(d).Add(d)
}

// sqlDB is implemented by ferry's SQL stores.
type sqlDB interface{ SQLDB() *sql.DB }
