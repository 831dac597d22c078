package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The metric names are a contract: scripts that compare runs read them.
const (
	// MetricWriteRate is how fast the relay benchmark loaded its messages
	// into the outbox, in messages per second.
	MetricWriteRate = "write_rate"
	// MetricDrainRate is how fast a relay drained a preloaded outbox:
	// messages delivered and recorded DONE per second.
	MetricDrainRate = "drain_rate"
	// MetricSustainedRate is what a relay delivered per second while
	// writers inserted at full speed.
	MetricSustainedRate = "sustained_rate"
	// MetricSustainedWriteRate is what those writers inserted per second.
	MetricSustainedWriteRate = "sustained_write_rate"
	// MetricSustainedBacklog is the WAITING messages left when the
	// sustained phase ended: how far the relay fell behind the writers.
	MetricSustainedBacklog = "sustained_backlog"
	// MetricThroughput is what a consumer handled per second.
	MetricThroughput = "throughput"
	// MetricStartP50 and MetricStartP99 are the job queue's latency from
	// an insert's commit to its worker starting, in milliseconds.
	MetricStartP50 = "start_p50_ms"
	MetricStartP99 = "start_p99_ms"

	// MetricIdleP50 and MetricIdleP99 are the online lane's latency, commit
	// to delivery, while it has the outbox to itself.
	MetricIdleP50 = "idle_p50_ms"
	MetricIdleP99 = "idle_p99_ms"
	// MetricOnlineP50, MetricOnlineP99 and MetricOnlineMax are the online
	// lane's latency while a batch floods the outbox.
	MetricOnlineP50 = "online_p50_ms"
	MetricOnlineP99 = "online_p99_ms"
	MetricOnlineMax = "online_max_ms"
	// MetricBatchDrainRate is batch messages delivered per second, from the
	// first batch write to the last batch delivery.
	MetricBatchDrainRate = "batch_drain_rate"
	// MetricBatchWriteRate is how fast the batch producer wrote its
	// messages while the relay ran.
	MetricBatchWriteRate = "batch_write_rate"
)

// Units of the results.
const (
	UnitRate     = "msg/s"
	UnitMillis   = "ms"
	UnitMessages = "msg"
	UnitJobRate  = "jobs/s"
)

// Systems measured.
const (
	// SystemFerry is ferry's relay.
	SystemFerry = "ferry"
	// SystemFIFO is the naive baseline: one goroutine polling one FIFO
	// over the whole outbox (see fifo.go).
	SystemFIFO = "fifo"
	// SystemRaw is a broker's plain client publishing the messages the
	// relay publishes, without an outbox: the ceiling the relay is
	// measured against.
	SystemRaw = "raw"
	// SystemNotify is not a relay but PostgreSQL's own wake-up: a LISTEN
	// connection of its own, beside ferry's relay, timing each online
	// commit's notification. No relay woken by notifications delivers
	// sooner, so its latencies are the floor under ferry's on the same
	// machine and load.
	SystemNotify = "notify"
)

// Result is one measurement. Encoded as JSON it is one flat object:
//
//	{"bench":"relay","system":"ferry","metric":"drain_rate","value":41234.5,
//	 "unit":"msg/s","messages":200000,"db":"postgres","keys":10000,...}
//
// with the parameters of the run after the fixed fields.
type Result struct {
	Bench    string // "relay" or "flood"
	System   string // SystemFerry, SystemFIFO, SystemRaw or SystemNotify
	Metric   string // one of the Metric constants
	Value    float64
	Unit     string // UnitRate, UnitMillis or UnitMessages
	Messages int    // the messages the benchmark is about (preloaded, or the batch)
	DB       string // "sqlite", "postgres" or "mysql"
	// Params are the run's parameters, shared by all its results.
	Params []Param
	// Notes qualify this result alone: how many samples it rests on,
	// whether a phase was cut short.
	Notes []Param
}

// Param is a named parameter of a run: a number, a string or a bool.
type Param struct {
	Name  string
	Value any
}

// MarshalJSON encodes r as one flat object, fixed fields first.
func (r Result) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	field := func(name string, v any) error {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		val, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("bench: encode %s: %w", name, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
		return nil
	}
	value := r.Value
	if math.IsNaN(value) || math.IsInf(value, 0) {
		value = 0 // JSON has no NaN; results never carry one on purpose
	}
	fixed := []Param{
		{"bench", r.Bench}, {"system", r.System}, {"metric", r.Metric},
		{"value", round(value)}, {"unit", r.Unit}, {"messages", r.Messages}, {"db", r.DB},
	}
	seen := map[string]bool{}
	all := append(append(fixed, r.Params...), r.Notes...)
	for _, p := range all {
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		if err := field(p.Name, p.Value); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// round keeps three decimals: enough for milliseconds and rates.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }

// WriteJSON writes one JSON object per line per result.
func WriteJSON(w io.Writer, results []Result) error {
	for _, r := range results {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes results as a table for people: the parameters of each
// benchmark once, then one row per result.
func WriteTable(w io.Writer, results []Result) error {
	var (
		heading string
		rows    [][]string
	)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		if _, err := fmt.Fprintln(w, heading); err != nil {
			return err
		}
		err := writeRows(w, append([][]string{{"bench", "system", "metric", "value", "unit", "notes"}}, rows...))
		rows = nil
		return err
	}
	for _, r := range results {
		if h := describeParams(r); h != heading {
			if err := flush(); err != nil {
				return err
			}
			heading = h
		}
		var notes []string
		for _, n := range r.Notes {
			notes = append(notes, fmt.Sprintf("%s=%v", n.Name, n.Value))
		}
		rows = append(rows, []string{r.Bench, r.System, r.Metric, formatValue(r.Value, r.Unit), r.Unit, strings.Join(notes, " ")})
	}
	return flush()
}

// writeRows writes rows in aligned columns, the fourth (values) aligned
// right, the last one left ragged.
func writeRows(w io.Writer, rows [][]string) error {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			width[i] = max(width[i], len(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		b.WriteString("  ")
		for i, cell := range row {
			pad := strings.Repeat(" ", width[i]-len(cell))
			switch {
			case i == len(row)-1:
				b.WriteString(cell)
			case i == 3:
				b.WriteString(pad + cell + "  ")
			default:
				b.WriteString(cell + pad + "  ")
			}
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(b.String(), " ")); err != nil {
			return err
		}
	}
	return nil
}

// describeParams is the heading of a benchmark's rows.
func describeParams(r Result) string {
	where := ""
	if r.DB != "" {
		where = " on " + r.DB
	}
	parts := []string{fmt.Sprintf("%s benchmark%s, %s messages", r.Bench, where, group(float64(r.Messages), 0))}
	for _, p := range r.Params {
		parts = append(parts, fmt.Sprintf("%s=%v", p.Name, p.Value))
	}
	return strings.Join(parts, ", ")
}

// formatValue formats v for the table: rates and counts as whole numbers
// with thousands separators, milliseconds with one or two decimals.
func formatValue(v float64, unit string) string {
	if unit == UnitMillis {
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 2, 64)
		}
		return group(v, 1)
	}
	return group(v, 0)
}

// group formats v with prec decimals and commas between thousands.
func group(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}
