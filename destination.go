package ferry

import "context"

// Destination is where the relay delivers a message: a broker topic, a
// webhook, or a Go function in the same process (transport/local).
//
// Deliver returns nil once the destination has durably accepted the
// message. An error makes the relay retry with backoff; an error wrapped
// with Permanent makes the message FAILED at once. Deliver must honour
// ctx: the relay cancels it at the lane's delivery timeout and at
// shutdown. The relay calls Deliver from many goroutines, but never for
// two messages of the same lane and key at once.
type Destination interface {
	Deliver(ctx context.Context, r *Record) error
}

// DestinationFunc adapts a function to Destination.
type DestinationFunc func(ctx context.Context, r *Record) error

// Deliver calls f(ctx, r).
func (f DestinationFunc) Deliver(ctx context.Context, r *Record) error { return f(ctx, r) }
