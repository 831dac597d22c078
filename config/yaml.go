package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/transport"
	"gopkg.in/yaml.v3"
)

// parser walks a YAML tree and collects problems.
type parser struct {
	file     string
	lookup   func(name string) (string, bool) // environment variables
	problems []Problem
}

// pos returns n's position; a nil n is the top of the file.
func (p *parser) pos(n *yaml.Node) Pos {
	if n == nil || n.Line == 0 {
		return Pos{File: p.file, Line: 1, Column: 1}
	}
	return Pos{File: p.file, Line: n.Line, Column: n.Column}
}

// addf records a problem at n.
func (p *parser) addf(n *yaml.Node, path, format string, args ...any) {
	p.problems = append(p.problems, Problem{Pos: p.pos(n), Path: path, Message: fmt.Sprintf(format, args...)})
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or an explicit null ("key:" with no
// value, "~", "null").
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what n is, for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n = resolve(n); n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return quoteValue(n)
	}
	return "nothing"
}

// quoteValue shows a scalar as the user wrote it: numbers bare, anything
// else quoted.
func quoteValue(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!int", "!!float", "!!bool":
		return n.Value
	}
	return strconv.Quote(n.Value)
}

// entry is one key of a mapping.
type entry struct {
	key, value *yaml.Node
}

// mapping reads the keys of one YAML mapping and reports the ones nobody
// asked for.
type mapping struct {
	p       *parser
	path    string     // the mapping's key path; "" at the top
	at      *yaml.Node // where to report missing keys: the mapping's key, or nil at the top
	keys    []string   // in file order
	entries map[string]entry
	asked   []string // the keys the program knows, in the order it asked for them
}

// mapping returns the mapping at value, whose key is at (nil at the top).
// A null or absent value is an empty mapping; anything else that is not a
// mapping is a problem, and an empty mapping is returned.
func (p *parser) mapping(at, value *yaml.Node, path string) *mapping {
	m := &mapping{p: p, path: path, at: at, entries: map[string]entry{}}
	if isNull(value) {
		return m
	}
	n := resolve(value)
	if n.Kind != yaml.MappingNode {
		p.addf(value, path, "must be a mapping of keys to values, got %s", describe(n))
		return m
	}
	m.add(n, false)
	return m
}

// add adds the pairs of mapping node n. Merged pairs (from "<<: *anchor")
// never replace explicit ones, and are added after them.
func (m *mapping) add(n *yaml.Node, merged bool) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			m.p.addf(k, m.path, "keys must be plain names, got %s", describe(k))
			continue
		}
		name := k.Value
		if first, dup := m.entries[name]; dup {
			if !merged {
				m.p.addf(k, m.join(name), "duplicate key: it is already set at line %d; remove one of them", first.key.Line)
			}
			continue
		}
		m.keys = append(m.keys, name)
		m.entries[name] = entry{key: k, value: v}
	}
	for _, v := range merges {
		v = resolve(v)
		var sources []*yaml.Node
		switch v.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{v}
		case yaml.SequenceNode:
			for _, s := range v.Content {
				sources = append(sources, resolve(s))
			}
		}
		for _, s := range sources {
			if s.Kind != yaml.MappingNode {
				m.p.addf(s, m.join("<<"), "can only merge mappings, got %s", describe(s))
				continue
			}
			m.add(s, true)
		}
	}
}

// join returns the key path of key inside m.
func (m *mapping) join(key string) string {
	if m.path == "" {
		return key
	}
	return m.path + "." + key
}

// get returns the entry of key, if present, and notes key as known.
func (m *mapping) get(key string) (entry, bool) {
	if !slices.Contains(m.asked, key) {
		m.asked = append(m.asked, key)
	}
	e, ok := m.entries[key]
	return e, ok && !isNull(e.value)
}

// renamed reports key, if present, as a key of an older ferry that is now
// called something else (hint says what to do), and drops it so that it is
// not also reported as unknown.
func (m *mapping) renamed(key, hint string) {
	e, ok := m.entries[key]
	if !ok {
		return
	}
	m.p.addf(e.key, m.join(key), "%s", hint)
	delete(m.entries, key)
	m.keys = slices.DeleteFunc(m.keys, func(k string) bool { return k == key })
}

// has reports whether key is set (to something other than null).
func (m *mapping) has(key string) bool {
	_, ok := m.get(key)
	return ok
}

// done reports the keys nobody asked for, suggesting the known key each
// looks like.
func (m *mapping) done() {
	for _, k := range m.keys {
		if slices.Contains(m.asked, k) {
			continue
		}
		msg := fmt.Sprintf("unknown key %q", k)
		if s := suggest(k, m.asked); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += fmt.Sprintf(" (known keys: %s)", strings.Join(m.asked, ", "))
		}
		m.p.addf(m.entries[k].key, m.join(k), "%s", msg)
	}
}

// missing reports that key is required.
func (m *mapping) missing(key, why string) {
	m.p.addf(m.at, m.join(key), "is required: %s", why)
}

// scalar returns the value of key as text with ${VAR} expanded; ok is false
// if the key is absent or wrong (and then a problem has been recorded if
// it was wrong).
func (m *mapping) scalar(key string) (s string, e entry, ok bool) {
	e, ok = m.get(key)
	if !ok {
		return "", e, false
	}
	s, ok = m.p.scalar(e.value, m.join(key))
	return s, e, ok
}

// scalar returns n's text with ${VAR} expanded.
func (p *parser) scalar(n *yaml.Node, path string) (string, bool) {
	r := resolve(n)
	if r.Kind != yaml.ScalarNode {
		p.addf(n, path, "must be a single value, got %s", describe(r))
		return "", false
	}
	return p.expand(n, path, r.Value)
}

var envRef = regexp.MustCompile(`\$\$|\$\{([^}]*)\}`)

// expand replaces ${NAME} and ${NAME:-default} with environment variables
// and $$ with $. A reference to an unset variable without a default is a
// problem.
func (p *parser) expand(n *yaml.Node, path, s string) (string, bool) {
	if !strings.Contains(s, "$") {
		return s, true
	}
	ok := true
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		name, def, hasDef := strings.Cut(ref[2:len(ref)-1], ":-")
		if !validEnvName(name) {
			p.addf(n, path, "%q is not a valid variable reference: write ${NAME} or ${NAME:-default} with NAME made of letters, digits and underscores (and $$ for a literal $)", ref)
			ok = false
			return ""
		}
		if v, set := p.lookup(name); set && (v != "" || !hasDef) {
			return v
		}
		if hasDef {
			return def
		}
		p.addf(n, path, "environment variable %s is not set: set it, or give a default with ${%s:-value}", name, name)
		ok = false
		return ""
	})
	return out, ok
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func validEnvName(s string) bool { return envName.MatchString(s) }

// text returns key's value as a string ("" if absent).
func (m *mapping) text(key string) string {
	s, _, _ := m.scalar(key)
	return s
}

// positiveInt returns key's value, which must be an integer of at least 1
// (0 if absent or wrong).
func (m *mapping) positiveInt(key string) int {
	s, e, ok := m.scalar(key)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 {
		m.p.addf(e.value, m.join(key), "must be a positive integer, got %s", shown(e.value, s))
		return 0
	}
	return n
}

// nonNegativeNumber returns key's value, a number of at least 0.
func (m *mapping) nonNegativeNumber(key, unit string) float64 {
	s, e, ok := m.scalar(key)
	if !ok {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		m.p.addf(e.value, m.join(key), "must be a number of %s, 0 or more, got %s", unit, shown(e.value, s))
		return 0
	}
	return f
}

// positive is the least positive duration, for duration's atLeast.
const positive = time.Nanosecond

// duration returns key's value, a duration of at least atLeast (0 if
// absent or wrong).
func (m *mapping) duration(key string, atLeast time.Duration) time.Duration {
	s, e, ok := m.scalar(key)
	if !ok {
		return 0
	}
	s = strings.TrimSpace(s)
	d, err := parseDuration(s)
	switch {
	case err != nil:
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			m.p.addf(e.value, m.join(key), "must be a duration with a unit, got %s: write %ss for seconds or %sms for milliseconds", shown(e.value, s), s, s)
		} else {
			m.p.addf(e.value, m.join(key), "must be a duration such as 500ms, 10s, 5m, 2h or 7d, got %s", shown(e.value, s))
		}
	case d >= atLeast:
		return d
	case atLeast == positive:
		m.p.addf(e.value, m.join(key), "must be a positive duration, got %s", shown(e.value, s))
	case atLeast == 0:
		m.p.addf(e.value, m.join(key), "must not be negative, got %s", shown(e.value, s))
	default:
		m.p.addf(e.value, m.join(key), "must be at least %v, got %s", atLeast, shown(e.value, s))
	}
	return 0
}

// parseDuration is time.ParseDuration plus whole days as a leading "Nd",
// so that retention can be written "7d" or "1d12h".
func parseDuration(s string) (time.Duration, error) {
	days, rest, found := strings.Cut(s, "d")
	if !found || days == "" || strings.TrimLeft(days, "0123456789") != "" {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n > 100000 {
		return 0, fmt.Errorf("bad number of days %q", days)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	r, err := time.ParseDuration(rest)
	if err != nil {
		return 0, err
	}
	return d + r, nil
}

// shown returns the value s of node n for a message: as written, and after
// expansion if that changed it.
func shown(n *yaml.Node, s string) string {
	r := resolve(n)
	if r.Value == s {
		return quoteValue(r)
	}
	return fmt.Sprintf("%s (from %s)", strconv.Quote(s), strconv.Quote(r.Value))
}

// oneOf returns key's value, which must be one of choices (compared
// without case); def if absent.
func (m *mapping) oneOf(key, def string, choices ...string) string {
	s, e, ok := m.scalar(key)
	if !ok {
		return def
	}
	for _, c := range choices {
		if strings.EqualFold(strings.TrimSpace(s), c) {
			return c
		}
	}
	msg := fmt.Sprintf("must be one of %s, got %s", strings.Join(choices, ", "), shown(e.value, s))
	if sg := suggest(s, choices); sg != "" {
		msg += fmt.Sprintf("; did you mean %q?", sg)
	}
	m.p.addf(e.value, m.join(key), "%s", msg)
	return def
}

// name checks a name given as a key (lane or destination names).
func (p *parser) name(k *yaml.Node, path, what string, maxLen int) bool {
	switch {
	case k.Value == "":
		p.addf(k, path, "%s name must not be empty", what)
	case len(k.Value) > maxLen || !utf8.ValidString(k.Value):
		p.addf(k, path, "%s name must be valid UTF-8 of at most %d bytes", what, maxLen)
	default:
		return true
	}
	return false
}

// suggest returns the candidate closest to s, if it is close enough to be
// a likely typo.
func suggest(s string, candidates []string) string {
	best, bestDist := "", math.MaxInt
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	for _, c := range candidates {
		d := distance(norm(s), norm(c))
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := 2
	if utf8.RuneCountInString(s) <= 4 {
		limit = 1
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

// distance is the edit distance between a and b, counting a swap of two
// neighbouring characters as one edit (optimal string alignment).
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// boolean returns key's value, true or false (false if absent or wrong).
func (m *mapping) boolean(key string) bool {
	s, e, ok := m.scalar(key)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		m.p.addf(e.value, m.join(key), "must be true or false, got %s", shown(e.value, s))
	}
	return b
}

// list returns key's value: a list of single values, or one value with
// commas between items (so that a list can come from one environment
// variable: brokers: ${KAFKA_BROKERS}).
func (m *mapping) list(key string) []string {
	e, ok := m.get(key)
	if !ok {
		return nil
	}
	path := m.join(key)
	n := resolve(e.value)
	var items []string
	switch n.Kind {
	case yaml.ScalarNode:
		s, ok := m.p.expand(e.value, path, n.Value)
		if !ok {
			return nil
		}
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if s, ok := m.p.scalar(c, fmt.Sprintf("%s[%d]", path, i)); ok {
				items = append(items, strings.TrimSpace(s))
			}
		}
	default:
		m.p.addf(e.value, path, "must be a list such as [a, b], got %s", describe(n))
	}
	return items
}

// sub returns the mapping under key (empty if absent). Call done on it.
func (m *mapping) sub(key string) *mapping {
	e, _ := m.get(key)
	return m.p.mapping(e.key, e.value, m.join(key))
}

// items returns the mappings listed under key, each to be read and done.
func (m *mapping) items(key string) []*mapping {
	e, ok := m.get(key)
	if !ok {
		return nil
	}
	path := m.join(key)
	n := resolve(e.value)
	if n.Kind != yaml.SequenceNode {
		m.p.addf(e.value, path, "must be a list of mappings, got %s", describe(n))
		return nil
	}
	var ms []*mapping
	for i, c := range n.Content {
		ms = append(ms, m.p.mapping(c, c, fmt.Sprintf("%s[%d]", path, i)))
	}
	return ms
}

// format reads the header format of a broker transport.
func (m *mapping) format() transport.Format {
	f, _ := transport.ParseFormat(m.oneOf("format", "ferry", "ferry", "cloudevents"))
	return f
}
