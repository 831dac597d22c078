package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamSetup creates or updates the configured streams once, lazily:
// when the server is down at start it tries again, from a background
// loop and from the first calls that need the streams, until it has an
// answer.
type streamSetup struct {
	js      jetstream.JetStream
	streams []Stream
	log     *slog.Logger

	done atomic.Bool   // every stream has its answer
	sem  chan struct{} // one attempt at a time; a channel so waiters honour ctx

	mu  sync.Mutex
	err error // the server's refusal of a stream's configuration, if any
}

func newStreamSetup(js jetstream.JetStream, streams []Stream, log *slog.Logger) *streamSetup {
	s := &streamSetup{js: js, streams: streams, log: log, sem: make(chan struct{}, 1)}
	if len(streams) == 0 {
		s.done.Store(true)
	}
	return s
}

// ensure returns once the streams exist, or with the error of this
// attempt if the server could not be asked (not connected, timeout). A
// configuration the server refuses does not make ensure fail: publishing
// goes on with the streams as they are, and refusal() reports it.
func (s *streamSetup) ensure(ctx context.Context) error {
	if s.done.Load() {
		return nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	if s.done.Load() {
		return nil
	}
	var refused []error
	for _, st := range s.streams {
		_, err := s.js.CreateOrUpdateStream(ctx, st.config())
		if err == nil {
			continue
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			// The server answered and said no: trying again will not help.
			err = fmt.Errorf("nats: the server refused the configuration of stream %q (subjects %q): %w", st.Name, st.Subjects, err)
			s.log.Error(err.Error())
			refused = append(refused, err)
			continue
		}
		return fmt.Errorf("nats: create or update stream %q: %w", st.Name, err)
	}
	s.mu.Lock()
	s.err = errors.Join(refused...)
	s.mu.Unlock()
	s.done.Store(true)
	return nil
}

// refusal returns the server's refusal of a stream's configuration, if
// any.
func (s *streamSetup) refusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// run calls ensure until it succeeds or ctx ends, so that the streams are
// made when the server comes back even if nothing is published.
func (s *streamSetup) run(ctx context.Context) {
	wait := 200 * time.Millisecond
	for !s.done.Load() {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.ensure(attempt)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Debug("nats: streams not created yet; trying again", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}
