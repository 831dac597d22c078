package amqp

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferry-dev/ferry/transport"
)

// CEPrefix is the prefix of CloudEvents attributes in the headers table.
// The CloudEvents AMQP binding puts attributes in AMQP 1.0
// application-properties under "cloudEvents:"; RabbitMQ maps those to and
// from the AMQP 0-9-1 headers table, so a consumer speaking either protocol
// finds them where the binding says.
const CEPrefix = "cloudEvents:"

// maxShortstr is the longest AMQP 0-9-1 short string: exchange names,
// routing keys, header names and the message properties ferry sets.
const maxShortstr = 255

// contentType is the message header that becomes the AMQP content-type
// property, which is also the CloudEvents datacontenttype in binary mode.
const contentType = "content-type"

// Header names RabbitMQ acts on when publishing: CC and BCC route the
// message to more routing keys (sender-selected distribution). A message
// header must not change where the message goes, so they are refused.
var routingHeaders = map[string]bool{"CC": true, "BCC": true}

// encoder turns a transport.Message into an AMQP publishing.
type encoder struct {
	enc transport.Encoding
	key routingKey
}

// publishing returns what to publish for m and its routing key, or the
// reason m cannot be published (which retrying will not change).
func (e *encoder) publishing(m *transport.Message) (amqp091.Publishing, string, error) {
	key := e.key.expand(m)
	if len(key) > maxShortstr {
		return amqp091.Publishing{}, "", fmt.Errorf("routing key %.40q... is %d bytes, over AMQP's limit of %d: shorten the field the routing key is made of (RoutingKey %q)", key, len(key), maxShortstr, e.key)
	}
	p := amqp091.Publishing{
		MessageId:    m.ID,
		Type:         m.Type,
		DeliveryMode: amqp091.Persistent,
		Body:         m.Payload,
		Headers:      make(amqp091.Table, len(m.Headers)+6),
	}
	if !m.OccurredAt.IsZero() {
		p.Timestamp = m.OccurredAt
	}
	var bad error
	e.enc.Headers(m, func(name, value string) {
		if bad != nil {
			return
		}
		if strings.EqualFold(name, contentType) {
			if len(value) > maxShortstr {
				bad = fmt.Errorf("header %q is %d bytes, over AMQP's limit of %d for the content-type property", name, len(value), maxShortstr)
			}
			p.ContentType = value
			return
		}
		if err := checkHeaderName(name); err != nil {
			bad = err
			return
		}
		p.Headers[name] = value
	})
	if bad != nil {
		return amqp091.Publishing{}, "", bad
	}
	if len(m.ID) > maxShortstr || len(m.Type) > maxShortstr {
		return amqp091.Publishing{}, "", fmt.Errorf("message id or type is over AMQP's limit of %d bytes for the message-id and type properties", maxShortstr)
	}
	return p, key, nil
}

func checkHeaderName(name string) error {
	switch {
	case name == "" || len(name) > maxShortstr || !utf8.ValidString(name):
		return fmt.Errorf("header name %.40q: AMQP header names are 1 to %d bytes of UTF-8: rename the header", name, maxShortstr)
	case routingHeaders[name]:
		return fmt.Errorf("header %q: RabbitMQ reads it as extra routing keys (sender-selected distribution), so it would change where the message goes: rename the header", name)
	}
	return nil
}

// decode builds the message of a delivery: the fields from the headers
// table in either format, the AMQP properties where the headers are
// silent (messages from producers other than ferry), content-type from
// the property.
func decode(d *amqp091.Delivery) transport.Message {
	m := transport.Decode(CEPrefix, func(yield func(name, value string) bool) {
		for name, v := range d.Headers {
			s, ok := headerString(v)
			if !ok {
				continue
			}
			if !yield(name, s) {
				return
			}
		}
	})
	if m.ID == "" {
		m.ID = d.MessageId
	}
	if m.Type == "" {
		m.Type = d.Type
	}
	if m.OccurredAt.IsZero() && !d.Timestamp.IsZero() {
		m.OccurredAt = d.Timestamp
	}
	if d.ContentType != "" {
		if m.Headers == nil {
			m.Headers = make(map[string]string, 1)
		}
		m.Headers[contentType] = d.ContentType
	}
	m.Payload = d.Body
	return m
}

// headerString renders a header value as text. Other producers (and the
// broker: x-death, x-delivery-count) write typed values; scalars are
// formatted, tables and arrays are left out because no string stands for
// them faithfully.
func headerString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return fmt.Sprint(v), true
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case amqp091.Decimal:
		return fmt.Sprintf("%de-%d", v.Value, v.Scale), true
	case time.Time:
		return v.UTC().Format(time.RFC3339), true
	}
	return "", false
}

// redelivered is how often the broker delivered d before: quorum queues
// count in x-delivery-count; classic queues only set the redelivered flag.
func redelivered(d *amqp091.Delivery) int {
	switch n := d.Headers["x-delivery-count"].(type) {
	case int64:
		if n > 0 {
			return int(n)
		}
	case int32:
		if n > 0 {
			return int(n)
		}
	}
	if d.Redelivered {
		return 1
	}
	return 0
}

// routingKey is the template a publisher makes each message's routing key
// from.
type routingKey string

var keyFields = strings.NewReplacer("{topic}", "", "{key}", "", "{type}", "")

// CheckRoutingKey reports what is wrong with a routing key template
// (PublisherOptions.RoutingKey, RouteOptions.RoutingKey), so that a
// configuration can be checked without making a publisher.
func CheckRoutingKey(template string) error { return routingKey(template).validate() }

func (k routingKey) validate() error {
	if i := strings.IndexAny(keyFields.Replace(string(k)), "{}"); i >= 0 {
		return fmt.Errorf("RoutingKey %q: unknown placeholder: the placeholders are {topic}, {key} and {type}", string(k))
	}
	if len(k) > maxShortstr {
		return fmt.Errorf("RoutingKey %q is over AMQP's limit of %d bytes", string(k), maxShortstr)
	}
	return nil
}

func (k routingKey) expand(m *transport.Message) string {
	switch k {
	case "{topic}":
		return m.Topic
	case "{key}":
		return m.Key
	case "{type}":
		return m.Type
	}
	if !strings.Contains(string(k), "{") {
		return string(k)
	}
	return strings.NewReplacer("{topic}", m.Topic, "{key}", m.Key, "{type}", m.Type).Replace(string(k))
}

// checkName checks an exchange or queue name as the broker will.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty", what)
	case len(name) > maxShortstr:
		return fmt.Errorf("%s name %.40q... is %d bytes, over AMQP's limit of %d", what, name, len(name), maxShortstr)
	case !utf8.ValidString(name):
		return fmt.Errorf("%s name %q is not valid UTF-8", what, name)
	}
	return nil
}
