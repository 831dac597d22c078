package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
	"gopkg.in/yaml.v3"
)

// The relay's defaults, which the checks compare against when a setting
// is absent.
const (
	defaultBackoffInitial = time.Second
	defaultBackoffMax     = 5 * time.Minute
	minLeaseTTL           = 300 * time.Millisecond
)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data and returns its root node (nil for an empty file);
// ok is false if the file is not YAML.
func (p *parser) document(data []byte) (root *yaml.Node, ok bool) {
	for i, line := range bytes.Split(data, []byte("\n")) {
		indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
		if j := bytes.IndexByte(indent, '\t'); j >= 0 {
			p.problems = append(p.problems, Problem{Pos: Pos{File: p.file, Line: i + 1, Column: j + 1},
				Message: "a tab indents this line; YAML indents with spaces only"})
		}
	}
	if len(p.problems) > 0 {
		return nil, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		msg := "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")
		pos := Pos{File: p.file}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			// The YAML parser reports where the construct it was reading
			// began, which may be a line or so before the mistake.
			pos.Line, _ = strconv.Atoi(m[1])
			msg = "not valid YAML at or after this line: " + m[2]
		}
		p.problems = append(p.problems, Problem{Pos: pos, Message: msg})
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		p.addf(&next, "", "a second YAML document starts here; a config is one document: remove the '---' line and what follows, or merge it into the first")
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	return doc.Content[0], true
}

// section returns the mapping under key of top.
func (p *parser) section(top *mapping, key string) *mapping {
	e, _ := top.get(key)
	return p.mapping(e.key, e.value, key)
}

func (p *parser) database(c *Config, top *mapping) {
	db := p.section(top, "database")
	if v, ok := p.lookup(EnvDatabaseURL); ok && v != "" {
		db.get("url") // known, but replaced
		c.Database.URL, c.Database.FromEnv = v, true
	} else if url, e, ok := db.scalar("url"); ok {
		if err := checkURL(url); err != nil {
			p.addf(e.value, "database.url", "%v", err)
		}
		c.Database.URL = url
	} else if _, present := db.get("url"); !present {
		db.missing("url", "the outbox's database, such as sqlite:ferry.db, postgres://user@host/db or mysql://user@host/db (or set "+EnvDatabaseURL+")")
	}
	if table, e, ok := db.scalar("table"); ok {
		if err := sqlstore.CheckTable(table); err != nil {
			p.addf(e.value, "database.table", "%s", strings.TrimPrefix(err.Error(), "ferry: "))
		}
		c.Database.Table = table
	}
	c.Database.MaxConns = db.positiveInt("max_conns")
	db.done()
}

func (p *parser) relay(c *Config, top *mapping) {
	r := p.section(top, "relay")
	c.Relay = Relay{
		Node:            r.text("node"),
		LeaseTTL:        r.duration("lease_ttl", minLeaseTTL),
		PollInterval:    r.duration("poll_interval", positive),
		RescanInterval:  r.duration("rescan_interval", positive),
		PollAbove:       r.nonNegativeNumber("poll_above", "commits per second"),
		Retention:       r.duration("retention", 0),
		ShutdownTimeout: r.duration("shutdown_timeout", positive),
	}
	if c.Relay.Retention == 0 && r.has("retention") {
		c.Relay.Retention = -1 // the relay reads 0 as its default
	}
	r.done()
}

func (p *parser) lanes(c *Config, top *mapping) {
	e, _ := top.get("lanes")
	lanes := p.mapping(e.key, e.value, "lanes")
	if len(lanes.keys) == 0 && (isNull(e.value) || resolve(e.value).Kind == yaml.MappingNode) {
		p.addf(e.key, "lanes", "at least one lane is required, such as `lanes: {default: {}}`; a message's lane is %q unless it names one", ferry.DefaultLane)
	}
	for _, name := range lanes.keys {
		le, _ := lanes.get(name)
		path := lanes.join(name)
		p.name(le.key, path, "lane", ferry.MaxNameLen)
		c.Lanes = append(c.Lanes, p.lane(name, le, path))
	}
	lanes.done()
}

func (p *parser) lane(name string, e entry, path string) relay.Lane {
	m := p.mapping(e.key, e.value, path)
	l := relay.Lane{
		Name:        name,
		Weight:      m.positiveInt("weight"),
		Concurrency: m.positiveInt("concurrency"),
		Rate:        m.nonNegativeNumber("rate", "messages per second"),
		Burst:       m.positiveInt("burst"),
		BatchSize:   m.positiveInt("batch_size"),
		Timeout:     m.duration("timeout", positive),
		MaxAttempts: m.positiveInt("max_attempts"),
	}
	if l.Burst > 0 && !m.has("rate") {
		be, _ := m.get("burst")
		p.addf(be.value, m.join("burst"), "has no effect without rate: set rate (messages per second) too, or remove burst")
	}
	if be, ok := m.get("backoff"); ok {
		b := p.mapping(be.key, be.value, m.join("backoff"))
		l.Backoff = relay.Backoff{Initial: b.duration("initial", positive), Max: b.duration("max", positive)}
		initial, maxB := cmp(l.Backoff.Initial, defaultBackoffInitial), cmp(l.Backoff.Max, defaultBackoffMax)
		if maxB < initial && (l.Backoff.Initial > 0 || l.Backoff.Max > 0) {
			at, what := be.key, b.join("max")
			if me, ok := b.get("max"); ok {
				at = me.value
			}
			p.addf(at, what, "the longest wait (%v) must not be shorter than backoff.initial (%v)", maxB, initial)
		}
		b.done()
	}
	l.OnFailed = relay.FailedPolicy(m.oneOf("on_failed", "", string(relay.Hold), string(relay.Skip)))
	m.done()
	return l
}

// cmp returns v, or def if v is zero.
func cmp(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// transports reads the transports and returns the names defined with
// their types (empty for a type with problems), even those with problems,
// so routes can be checked against them.
func (p *parser) transports(c *Config, top *mapping) map[string]string {
	e, _ := top.get("transports")
	section := p.mapping(e.key, e.value, "transports")
	types := transportTypes()
	typeNames := transportTypeNames()
	defined := map[string]string{}
	for _, name := range section.keys {
		te, _ := section.get(name)
		path := section.join(name)
		defined[name] = ""
		p.name(te.key, path, "transport", ferry.MaxNameLen)
		if !isNull(te.value) && resolve(te.value).Kind != yaml.MappingNode {
			p.addf(te.value, path, "must be a mapping such as {type: kafka, brokers: [localhost:9092]}, got %s", describe(te.value))
			continue
		}
		m := p.mapping(te.key, te.value, path)
		typ, typeEntry, ok := m.scalar("type")
		if !ok {
			if _, present := m.get("type"); !present {
				m.missing("type", "one of "+strings.Join(typeNames, ", "))
			}
			m.done()
			continue
		}
		tt, known := types[typ]
		if !known {
			msg := fmt.Sprintf("unknown transport type %q", typ)
			if s := suggest(typ, typeNames); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			p.addf(typeEntry.value, m.join("type"), "%s (known types: %s)", msg, strings.Join(typeNames, ", "))
			continue // its other keys are unknown to us too
		}
		defined[name] = typ
		c.Transports = append(c.Transports, Transport{Name: name, Type: typ, Pos: p.pos(te.key), build: tt.check(m)})
		m.done()
	}
	section.done()
	return defined
}

func (p *parser) routes(c *Config, top *mapping, transports map[string]string) {
	e, _ := top.get("routes")
	if isNull(e.value) {
		p.addf(e.key, "routes", "at least one route is required, such as `routes: [{topic: \"*\", to: NAME}]`; a message no route matches becomes FAILED")
		return
	}
	list := resolve(e.value)
	if list.Kind != yaml.SequenceNode {
		p.addf(e.value, "routes", "must be a list of {topic: PATTERN, to: TRANSPORT, destination: NAME}, got %s", describe(list))
		return
	}
	if len(list.Content) == 0 {
		p.addf(e.value, "routes", "at least one route is required; a message no route matches becomes FAILED")
	}
	names := slices.Sorted(maps.Keys(transports))
	types := transportTypes()
	for i, item := range list.Content {
		path := fmt.Sprintf("routes[%d]", i)
		if resolve(item).Kind != yaml.MappingNode {
			p.addf(item, path, "must be a mapping such as {topic: \"orders.*\", to: NAME}, got %s", describe(item))
			continue
		}
		m := p.mapping(item, item, path)
		r := Route{Pos: p.pos(item), Destination: "{topic}"}
		if topic, te, ok := m.scalar("topic"); ok {
			r.Topic = topic
			if err := checkPattern(topic); err != nil || topic == "" {
				p.addf(te.value, m.join("topic"), "%q is not a valid topic pattern: use a topic name, or * (any characters but /), ? and [a-z] wildcards", topic)
			} else {
				for j, earlier := range c.Routes {
					if earlier.Topic == "*" || earlier.Topic == topic {
						p.addf(te.value, m.join("topic"), "this route never matches: routes[%d] (topic %q, line %d) comes first and matches every topic this one does", j, earlier.Topic, earlier.Pos.Line)
						break
					}
				}
			}
		} else if _, present := m.get("topic"); !present {
			m.missing("topic", `the topics this route matches, such as "orders.*" or "*"`)
		}
		typ, defined := "", false
		if to, te, ok := m.scalar("to"); ok {
			r.To = to
			typ, defined = transports[to]
			if !defined {
				msg := fmt.Sprintf("transport %q is not defined", to)
				switch s := suggest(to, names); {
				case s != "":
					msg += fmt.Sprintf("; did you mean %q?", s)
				case len(names) == 0:
					msg += "; define it under transports"
				default:
					msg += fmt.Sprintf(" (defined: %s)", strings.Join(names, ", "))
				}
				p.addf(te.value, m.join("to"), "%s", msg)
			}
		} else if _, present := m.get("to"); !present {
			m.missing("to", "the name of the transport, defined under transports")
		}
		if dest, de, ok := m.scalar("destination"); ok {
			r.Destination = transport.Target(dest)
			if types[typ].sink {
				p.addf(de.value, m.join("destination"), "transport %q (%s) takes every message it is given and has no destinations: remove this key", r.To, typ)
			} else if err := r.Destination.Validate(); err != nil {
				p.addf(de.value, m.join("destination"), "%v", err)
			}
		}
		if settings := types[typ].route; settings != nil {
			r.settings = settings(m)
		}
		if defined {
			m.done() // which keys are settings depends on the transport's type
		}
		c.Routes = append(c.Routes, r)
	}
}

func (p *parser) log(c *Config, top *mapping) {
	l := p.section(top, "log")
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	c.Log.Level = levels[l.oneOf("level", "info", "debug", "info", "warn", "error")]
	c.Log.Format = l.oneOf("format", "text", "text", "json")
	l.done()
}

// checkURL checks the form of a database URL without connecting, so that
// a typo in the scheme is reported with its position. store.Open decides
// for real; this recognizes the same prefixes.
func checkURL(url string) error {
	lower := strings.ToLower(strings.TrimSpace(url))
	if lower == "" {
		return errors.New("must not be empty: give the outbox's database, such as sqlite:ferry.db")
	}
	for _, prefix := range []string{"postgres://", "postgresql://", "mysql://", "mariadb://", "sqlite:", "file:"} {
		if strings.HasPrefix(lower, prefix) {
			return nil
		}
	}
	file, _, _ := strings.Cut(lower, "?")
	for _, ext := range []string{".db", ".sqlite", ".sqlite3"} {
		if strings.HasSuffix(file, ext) {
			return nil
		}
	}
	return fmt.Errorf("cannot tell which database %s is; use one of: %s", strconv.Quote(store.Describe(url)), store.Forms)
}

// sortProblems orders problems by position.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Column - b.Pos.Column
	})
}
