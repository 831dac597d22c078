package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry"
)

// selection is how retry and exclude choose messages: by id, by seq, by a
// filter, or all of them with --all.
type selection struct {
	ids              stringList
	seqs             seqList
	lane, topic, key string
	all              bool
}

func (s *selection) register(fs *flag.FlagSet, verb, states string) {
	fs.Var(&s.ids, "id", "the message `id` to "+verb+"; repeat the flag or separate ids with commas")
	fs.Var(&s.seqs, "seq", "the message `seq` to "+verb+" (as 'ferry list' shows it); repeat or separate with commas")
	fs.StringVar(&s.lane, "lane", "", "only messages of this `lane`")
	fs.StringVar(&s.topic, "topic", "", "only messages of this `topic`")
	fs.StringVar(&s.key, "key", "", "only messages with this `key`")
	fs.BoolVar(&s.all, "all", false, verb+" every "+states+" message")
}

// filter returns the store filter of the selection, or a usage error if it
// selects nothing in particular without --all.
func (s *selection) filter(verb, states string) (ferry.Filter, error) {
	f := ferry.Filter{IDs: s.ids, Seqs: s.seqs, Lane: s.lane, Topic: s.topic, Key: s.key}
	narrowed := len(f.IDs) > 0 || len(f.Seqs) > 0 || f.Lane != "" || f.Topic != "" || f.Key != ""
	switch {
	case s.all && narrowed:
		return f, usagef("--all means every %s message: leave it out when you choose messages with --id, --seq, --lane, --topic or --key", states)
	case !s.all && !narrowed:
		return f, usagef("which messages? choose them with --id, --seq, --lane, --topic or --key, or give --all to %s every %s message", verb, states)
	}
	return f, nil
}

// String describes the selection for messages, as its flags.
func (s *selection) String() string {
	var parts []string
	if len(s.ids) > 0 {
		parts = append(parts, "--id "+quoteArg(strings.Join(s.ids, ",")))
	}
	if len(s.seqs) > 0 {
		parts = append(parts, "--seq "+s.seqs.String())
	}
	for _, p := range []struct{ flag, v string }{{"--lane", s.lane}, {"--topic", s.topic}, {"--key", s.key}} {
		if p.v != "" {
			parts = append(parts, p.flag+" "+quoteArg(p.v))
		}
	}
	if s.all {
		parts = append(parts, "--all")
	}
	return strings.Join(parts, " ")
}

// explainNoMatch says why the messages named by id or seq were not
// changed: they are in another state, or do not exist.
func (s *selection) explainNoMatch(ctx context.Context, st ferry.Store, want string) []string {
	var recs []ferry.Record
	for _, f := range []ferry.Filter{{IDs: s.ids, Limit: len(s.ids)}, {Seqs: s.seqs, Limit: len(s.seqs)}} {
		if f.Limit == 0 {
			continue
		}
		found, err := st.List(ctx, f)
		if err != nil {
			return nil
		}
		recs = append(recs, found...)
	}
	var lines []string
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.ID] {
			continue // named by both id and seq
		}
		seen[r.ID] = true
		seen["#"+strconv.FormatInt(r.Seq, 10)] = true
		lines = append(lines, fmt.Sprintf("message %d (id %s, lane %s) is %s, not %s", r.Seq, r.ID, r.Lane, r.Status, want))
	}
	for _, id := range s.ids {
		if !seen[id] {
			lines = append(lines, fmt.Sprintf("no message has id %s", id))
		}
	}
	for _, seq := range s.seqs {
		if !seen["#"+strconv.FormatInt(seq, 10)] {
			lines = append(lines, fmt.Sprintf("no message has seq %d", seq))
		}
	}
	return lines
}

// stringList is a repeatable flag of comma-separated strings.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// seqList is a repeatable flag of comma-separated seqs.
type seqList []int64

func (l *seqList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(s, ",")
}

func (l *seqList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a seq: seqs are the positive numbers 'ferry list' shows", s)
		}
		*l = append(*l, n)
	}
	return nil
}
