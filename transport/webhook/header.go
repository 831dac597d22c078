package webhook

import (
	"fmt"
	"net/url"
	"strings"
)

// cePrefix is the CloudEvents HTTP binding's prefix for event attributes.
const cePrefix = "ce-"

// idempotencyKey carries the message id, so that receivers with support
// for the (draft) Idempotency-Key header deduplicate pushes; it also lets
// net/http resend a push on a kept-alive connection the server had just
// closed, which it does only for requests marked idempotent.
const idempotencyKey = "Idempotency-Key"

// framing are the headers HTTP itself uses to frame and route a request.
// A message header with one of these names cannot travel under it.
var framing = map[string]bool{
	"connection": true, "content-length": true, "expect": true, "host": true,
	"keep-alive": true, "proxy-connection": true, "te": true, "trailer": true,
	"transfer-encoding": true, "upgrade": true,
}

// hop are the headers a receiver does not turn into message headers: those
// of the HTTP exchange rather than of the message. Names are lower case.
var hop = map[string]bool{
	"accept-encoding": true, "authorization": true, "proxy-authorization": true,
	"user-agent": true, strings.ToLower(SignatureHeader): true,
}

// validName reports whether name is an HTTP token (RFC 9110, 5.6.2).
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// checkValue returns why value cannot be sent unchanged as an HTTP header
// value, or "". Bytes of 0x80 and above (UTF-8) are sent as they are:
// HTTP calls them obs-text and servers pass them through.
func checkValue(value string) string {
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Sprintf("control character %q at byte %d", c, i)
		}
	}
	if value != strings.TrimSpace(value) {
		return "leading or trailing white space, which HTTP strips"
	}
	return ""
}

// ceEncode percent-encodes a CloudEvents attribute value as the HTTP
// binding asks: every byte outside printable ASCII, and '"' and '%'.
func ceEncode(v string) string {
	n := 0
	for i := 0; i < len(v); i++ {
		if ceEscape(v[i]) {
			n++
		}
	}
	if n == 0 {
		return v
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(v)+2*n)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if ceEscape(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func ceEscape(c byte) bool { return c <= ' ' || c > '~' || c == '"' || c == '%' }

// ceDecode undoes ceEncode; a value that is not valid percent-encoding is
// kept as it came.
func ceDecode(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	d, err := url.PathUnescape(v)
	if err != nil {
		return v
	}
	return d
}
