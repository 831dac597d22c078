package consume

import (
	"errors"
	"fmt"
)

// PermanentError marks an error that retrying will not fix: a payload the
// handler cannot decode, a message type nobody handles. The consumer sends
// the message to the dead letters at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the consumer does not retry it.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// NoHandlerError is the error of a message whose topic and type no handler
// is registered for.
type NoHandlerError struct {
	Topic, Type, ID string
}

func (e *NoHandlerError) Error() string {
	return fmt.Sprintf("consume: no handler for message %s (topic %q, type %q): register one with Router.Event or Router.Command, or choose what unknown messages get with Router.Unknown", e.ID, e.Topic, e.Type)
}
