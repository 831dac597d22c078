package transport_test

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
)

func headersOf(e transport.Encoding, m *transport.Message) map[string]string {
	h := map[string]string{}
	e.Headers(m, func(name, value string) { h[name] = value })
	return h
}

func TestHeadersRoundTrip(t *testing.T) {
	m := &transport.Message{
		ID: "m-1", Topic: "orders", Key: "order-7", Type: "OrderPlaced",
		Headers:    map[string]string{"traceparent": "00-abc-def-01", "tenant": "acme"},
		OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC),
	}
	for _, e := range []transport.Encoding{
		{},
		{Format: transport.FormatCloudEvents, CEPrefix: "ce_"},
		{Format: transport.FormatCloudEvents, CEPrefix: "cloudEvents:"},
	} {
		t.Run(e.Format.String()+e.CEPrefix, func(t *testing.T) {
			h := headersOf(e, m)
			got := transport.Decode(e.CEPrefix, maps.All(h))
			if e.Format == transport.FormatCloudEvents {
				// specversion and source are CloudEvents' own, not headers.
				if h[e.CEPrefix+"specversion"] != "1.0" || h[e.CEPrefix+"source"] != "ferry" {
					t.Errorf("headers %v lack specversion 1.0 and source ferry", h)
				}
			}
			if !reflect.DeepEqual(&got, m) {
				t.Errorf("decoded %+v\nwant    %+v\nfrom headers %v", got, *m, h)
			}
		})
	}
}

// A message's own header may not pose as one of its fields.
func TestReservedHeadersAreOverwritten(t *testing.T) {
	m := &transport.Message{ID: "real", Topic: "t", Headers: map[string]string{"ferry-id": "forged", "Ferry-Type": "forged"}}
	h := headersOf(transport.Encoding{}, m)
	if h["ferry-id"] != "real" || h["Ferry-Type"] != "" {
		t.Errorf("headers = %v; the message's fields must win over look-alike headers", h)
	}
}

// In ferry's format, headers that look like CloudEvents attributes are
// the message's own and do not set its fields.
func TestDecodeFerryFormatKeepsCloudEventsHeaders(t *testing.T) {
	h := map[string]string{"ferry-id": "m-1", "ferry-type": "Real", "ce-type": "Other", "ce-id": "x"}
	got := transport.Decode("ce-", maps.All(h))
	if got.ID != "m-1" || got.Type != "Real" || got.Headers["ce-type"] != "Other" || got.Headers["ce-id"] != "x" {
		t.Errorf("decoded %+v", got)
	}
}

func TestTarget(t *testing.T) {
	r := &ferry.Record{Message: ferry.Message{Lane: "online", Topic: "orders", Key: "k1", Type: "OrderPlaced"}}
	for target, want := range map[transport.Target]string{
		"{topic}":               "orders",
		"events":                "events",
		"{lane}.{topic}.{type}": "online.orders.OrderPlaced",
		"by-key/{key}":          "by-key/k1",
	} {
		if err := target.Validate(); err != nil {
			t.Errorf("Validate(%q): %v", target, err)
		}
		if got := target.Expand(r); got != want {
			t.Errorf("Expand(%q) = %q, want %q", target, got, want)
		}
	}
	for _, bad := range []transport.Target{"", "{tpoic}", "orders.{", "}"} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%q) = nil, want an error", bad)
		}
	}
}

func ExampleEncoding_Headers() {
	m := &transport.Message{ID: "m-1", Topic: "orders", Key: "order-7", Type: "OrderPlaced",
		Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	for _, e := range []transport.Encoding{{}, {Format: transport.FormatCloudEvents, CEPrefix: "ce_"}} {
		h := map[string]string{}
		e.Headers(m, func(name, value string) { h[name] = value })
		for _, name := range slices.Sorted(maps.Keys(h)) {
			fmt.Printf("%s: %s\n", name, h[name])
		}
		fmt.Println()
	}
	// Output:
	// ferry-id: m-1
	// ferry-key: order-7
	// ferry-topic: orders
	// ferry-type: OrderPlaced
	// traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
	//
	// ce_id: m-1
	// ce_partitionkey: order-7
	// ce_source: ferry
	// ce_specversion: 1.0
	// ce_subject: orders
	// ce_type: OrderPlaced
	// traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
}
