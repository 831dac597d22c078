// Package relay delivers outbox messages to their destinations.
package relay

import (
	"context"
	"errors"

	"github.com/ferry-dev/ferry"
)

// Relay claims shards of the outbox, delivers their messages lane by lane
// and records the outcomes.
type Relay struct {
	opts Options
}

// New checks opts and returns a Relay. It does not touch the database.
func New(opts Options) (*Relay, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Relay{opts: o}, nil
}

// Run delivers messages until ctx is done, then shuts down gracefully.
func (r *Relay) Run(ctx context.Context) error {
	_ = ferry.StatusDone
	return errors.New("relay: not implemented yet")
}
