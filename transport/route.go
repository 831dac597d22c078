package transport

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry"
)

// Target is where a route publishes: a broker destination name that may
// hold the placeholders {topic}, {key}, {type} and {lane}, replaced by the
// message's fields. "{topic}" publishes each message to the broker
// destination named like its topic; "orders" sends every message of the
// route to "orders".
type Target string

// placeholders are the fields a Target may name.
var placeholders = []string{"{topic}", "{key}", "{type}", "{lane}"}

// Validate reports a placeholder Target does not know, such as "{tpoic}".
func (t Target) Validate() error {
	s := string(t)
	if s == "" {
		return fmt.Errorf("destination is empty: name a broker destination, or {topic} for the message's topic")
	}
	rest := s
	for _, p := range placeholders {
		rest = strings.ReplaceAll(rest, p, "")
	}
	if i := strings.IndexAny(rest, "{}"); i >= 0 {
		return fmt.Errorf("destination %q: unknown placeholder near %q: the placeholders are %s", s, rest[i:], strings.Join(placeholders, ", "))
	}
	return nil
}

// Static reports whether t names one destination whatever the message.
func (t Target) Static() bool { return !strings.Contains(string(t), "{") }

// Expand returns the destination for r.
func (t Target) Expand(r *ferry.Record) string {
	s := string(t)
	if t.Static() {
		return s
	}
	if s == "{topic}" {
		return r.Topic
	}
	return strings.NewReplacer("{topic}", r.Topic, "{key}", r.Key, "{type}", r.Type, "{lane}", r.Lane).Replace(s)
}

// Destination returns the ferry.Destination that publishes each message to
// target through p: the relay's end of a route. A broker's refusal
// (*RejectedError) becomes permanent, so the message is FAILED with the
// broker's reason; other errors are retried by the relay. A message whose
// target expands to nothing (a {key} placeholder and no key) is refused
// the same way.
func Destination(p Publisher, target Target) ferry.Destination {
	return &destination{pub: p, target: target}
}

type destination struct {
	pub    Publisher
	target Target
}

func (d *destination) Deliver(ctx context.Context, r *ferry.Record) error {
	dest := d.target.Expand(r)
	if dest == "" {
		return ferry.Permanent(fmt.Errorf("destination %q is empty for message %s (topic %q, key %q): give the message the field the destination names, or change the route", d.target, r.ID, r.Topic, r.Key))
	}
	err := d.pub.Publish(ctx, dest, FromRecord(r))
	if err != nil && IsRejected(err) {
		return ferry.Permanent(err)
	}
	return err
}

// Check asks the broker about the route's destination when it is static
// and the publisher can tell (see Checker).
func Check(ctx context.Context, p Publisher, target Target) error {
	c, ok := p.(Checker)
	if !ok || !target.Static() {
		return nil
	}
	return c.Check(ctx, string(target))
}
