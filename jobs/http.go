package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ferry-dev/ferry"
)

// InsertRequest is the body of a POST to the client's HTTP endpoint, for
// services in other languages:
//
//	POST /  {"kind": "send_email", "args": {"to": "ann@example.com"},
//	         "queue": "default", "scheduled_at": "2026-11-22T10:00:00Z",
//	         "key": "account-7", "unique": {"by_args": true, "period": "24h"}}
//
// Everything but kind and args is optional.
type InsertRequest struct {
	Kind        string          `json:"kind"`
	Args        json.RawMessage `json:"args"`
	Queue       string          `json:"queue,omitempty"`
	ScheduledAt time.Time       `json:"scheduled_at,omitzero"`
	Key         string          `json:"key,omitempty"`
	Unique      *struct {
		ByArgs bool   `json:"by_args,omitempty"`
		Key    string `json:"key,omitempty"`
		Period string `json:"period,omitempty"` // a Go duration: "1h", "24h"
	} `json:"unique,omitempty"`
}

// maxRequest bounds the body of an insert request.
const maxRequest = 1 << 20

// Handler returns an http.Handler that inserts the job a POST describes
// (see InsertRequest) and answers 201 with {"id": ...}. A kind no worker
// knows, arguments that do not decode into the worker's type, an unknown
// queue or a malformed request is 400 with a message saying which; the job
// is then not inserted. The handler does no authentication: mount it
// behind whatever protects your other internal endpoints.
func (c *Client) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			httpError(w, http.StatusMethodNotAllowed, "POST a job: {\"kind\": ..., \"args\": {...}}")
			return
		}
		var req InsertRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxRequest))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "the request is not a job: "+err.Error())
			return
		}
		if req.Kind == "" || len(req.Args) == 0 {
			httpError(w, http.StatusBadRequest, `a job needs "kind" and "args"`)
			return
		}
		args, err := c.workers.decode(req.Kind, req.Args)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		opts := &InsertOpts{Queue: req.Queue, ScheduledAt: req.ScheduledAt, Key: req.Key}
		if u := req.Unique; u != nil {
			if !u.ByArgs && u.Key == "" {
				httpError(w, http.StatusBadRequest, `unique needs "by_args": true or a "key"`)
				return
			}
			opts.Unique = &Unique{ByArgs: u.ByArgs, Key: u.Key}
			if u.Period != "" {
				if opts.Unique.Period, err = time.ParseDuration(u.Period); err != nil || opts.Unique.Period <= 0 {
					httpError(w, http.StatusBadRequest, fmt.Sprintf("unique.period %q is not a positive duration such as \"1h\"", u.Period))
					return
				}
			}
		}
		id, err := c.insertAlone(r, args, opts)
		var unknownQueue *ferry.UnknownLaneError
		switch {
		case errors.As(err, &unknownQueue):
			httpError(w, http.StatusBadRequest, fmt.Sprintf("queue %q is not one this client runs", req.Queue))
		case err != nil && isInputError(err):
			httpError(w, http.StatusBadRequest, err.Error())
		case err != nil:
			httpError(w, http.StatusServiceUnavailable, "the job was not inserted: "+err.Error())
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(map[string]string{"id": id})
		}
	})
}

// insertAlone inserts one job in a transaction of its own.
func (c *Client) insertAlone(r *http.Request, args Args, opts *InsertOpts) (string, error) {
	tx, err := c.db.BeginTx(r.Context(), nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	id, err := c.Insert(r.Context(), tx, args, opts)
	if err != nil {
		return "", err
	}
	return id, tx.Commit()
}

// isInputError reports whether err is the request's fault.
func isInputError(err error) bool {
	var invalid *ferry.InvalidMessageError
	var tooLarge *ferry.PayloadTooLargeError
	var kind *UnknownKindError
	return errors.As(err, &invalid) || errors.As(err, &tooLarge) || errors.As(err, &kind)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
