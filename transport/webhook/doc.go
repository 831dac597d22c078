// Package webhook delivers messages as signed HTTP POST requests
// ("pushes") and receives them.
//
// The Publisher is the relay's end: it posts each message to a URL and
// reports it delivered only once the receiver answered 2xx. The Subscriber
// is the receiving end, an http.Handler that checks each push's signature
// and hands it to a consumer as a transport.Delivery; the consumer's Ack
// becomes the 204 the sender waits for. Either end works with any HTTP
// implementation on the other side: the wire format below is the whole
// contract.
//
// Only net/http is used.
//
// # Destinations
//
// A route's destination (Publish's dest) is an absolute http or https URL,
// or a path joined to Options.BaseURL: with BaseURL
// "https://hooks.example.com/ferry", the route target "{topic}" posts a
// message of topic "orders" to https://hooks.example.com/ferry/orders. A
// dest that is neither is refused (*transport.RejectedError), and Check
// reports it when the relay starts. Check does not contact the receiver.
//
// # The request
//
// The body is the message's payload, byte for byte. The headers, in the
// format Options.Format chooses:
//
//	message field      ferry format (default)     CloudEvents binary mode
//	ID                 Ferry-Id                   ce-id
//	Topic              Ferry-Topic                ce-subject
//	Key                Ferry-Key                  ce-partitionkey
//	Type               Ferry-Type                 ce-type (the topic if no type)
//	OccurredAt         Ferry-Occurred-At          ce-time
//	                   (RFC 3339, nanoseconds, UTC)
//	(fixed)                                       ce-specversion: 1.0, ce-source: Options.Source
//	Headers[name]      name: value                name: value
//	content type       Content-Type: the message's content-type header, or application/octet-stream
//	signature          Ferry-Signature (see below), when the publisher has secrets
//	                   Idempotency-Key: the message ID; User-Agent: ferry
//
// Empty fields are left out. CloudEvents attribute values are
// percent-encoded as the CloudEvents HTTP binding says (every byte outside
// printable ASCII, and space, '"' and '%'); other values travel as they
// are, UTF-8 included. A message header whose name is not an HTTP token,
// whose value holds a control character or leading or trailing white
// space (which HTTP would strip), or that is one of HTTP's framing headers
// (Content-Length, Host, Transfer-Encoding, ...) cannot travel unchanged:
// Publish refuses such a message with an error naming the header. Message
// headers named ferry-* (and ce-* in CloudEvents mode) are reserved for
// the fields and not sent. Options.Header adds headers to every push,
// such as an Authorization the receiver expects. Publisher.Route gives
// one route, one receiver, its own headers, secrets and timeout on the
// same connection pool.
//
// # The signature
//
// With Options.Secrets set, every push carries
//
//	Ferry-Signature: t=<timestamp>,v1=<signature>[,v1=<signature>...]
//
// where timestamp is the time of sending in Unix seconds and each
// signature is the lower-case hex HMAC-SHA256, keyed with one of the
// secrets, of the bytes
//
//	<timestamp> "." <body>
//
// (the timestamp as it appears in the header, a full stop, then the raw
// request body). A publisher with several secrets sends one v1 per
// secret, so a secret can be rotated without losing pushes: give the
// publisher the new and the old, move the receivers to the new, then
// drop the old. To verify a push, a receiver:
//
//  1. reads the raw body before any parsing (a re-encoded JSON body does
//     not match);
//  2. splits the header on "," and each part on the first "="; takes the
//     single t and every v1, ignoring other keys (room for future
//     schemes);
//  3. computes the HMAC of t + "." + body with its secret and compares it
//     with each v1 in constant time; one match is enough;
//  4. refuses the push if |now - t| is over its tolerance (ferry's
//     Subscriber: 5 minutes), which bounds how long a captured request
//     can be replayed; then deduplicates by Ferry-Id, since a push can
//     also come again legitimately (at least once).
//
// Verify does this in Go and Sign makes the header. In Python:
//
//	import hashlib, hmac, time
//
//	def verify(header: str, body: bytes, secret: bytes, tolerance: int = 300) -> bool:
//	    parts = [p.strip().partition("=") for p in header.split(",")]
//	    ts = [v for k, _, v in parts if k == "t"]
//	    if len(ts) != 1 or not ts[0].isdigit():
//	        return False
//	    mac = hmac.new(secret, ts[0].encode() + b"." + body, hashlib.sha256).hexdigest()
//	    return (any(hmac.compare_digest(mac, v) for k, _, v in parts if k == "v1")
//	            and abs(time.time() - int(ts[0])) <= tolerance)
//
// In Node.js (body is the raw body as a Buffer):
//
//	const crypto = require("node:crypto");
//
//	function verify(header, body, secret, toleranceSec = 300) {
//	  const parts = header.split(",").map((p) => p.trim().split("="));
//	  const ts = parts.filter(([k]) => k === "t").map(([, v]) => v);
//	  if (ts.length !== 1 || !/^\d+$/.test(ts[0])) return false;
//	  const want = crypto.createHmac("sha256", secret).update(ts[0] + ".").update(body).digest();
//	  const ok = parts.some(([k, v]) => {
//	    if (k !== "v1") return false;
//	    const got = Buffer.from(v, "hex");
//	    return got.length === want.length && crypto.timingSafeEqual(got, want);
//	  });
//	  return ok && Math.abs(Date.now() / 1000 - Number(ts[0])) <= toleranceSec;
//	}
//
// The signature covers the timestamp and the body, not the other headers:
// send pushes over https so that nobody on the way can read or change
// them.
//
// # The answer
//
// Publish returns nil for any 2xx. Statuses that Options.RetryStatus calls
// transient (by default 5xx, 408 and 429), timeouts (Options.Timeout,
// default 10s, and the ctx given to Publish) and connection failures
// return an error the relay retries with backoff; a status's error is a
// *StatusError holding the status, the start of the response body and the
// wait a Retry-After header asked for (shown in the error; the relay's own
// backoff decides when it tries again). Any other status refuses the
// message: a *transport.RejectedError with the status and the start of
// the body, which the relay stores as the message's last error when it
// marks the message FAILED.
//
// Redirects are not followed: a 3xx refuses the message with the Location
// in the error. A webhook URL that redirects is usually a mistake better
// fixed in the route (http for https, a moved endpoint), and net/http
// follows 301, 302 and 303 by sending a GET without the body, which would
// report a delivery that never happened. Options.FollowRedirects follows
// 307 and 308 only, which repeat the POST and its body.
//
// Concurrent pushes share one http.Client whose transport keeps up to 1024
// idle connections per host, so the relay's workers reuse connections
// instead of opening one per push (a lane pushing from more goroutines
// than that would open and close a connection for most pushes); Options.MaxConnsPerHost caps them for a
// receiver that cannot take many, and Options.Client replaces the client
// (for TLS settings, a proxy, instrumentation).
//
// # Receiving
//
// A Subscriber serves the pushes of the paths it has subscriptions for:
// Subscribe(ctx, "/orders", group) receives the pushes posted to /orders
// (source may also be the full URL the publisher posts to). Mount it in a
// server of your own, with http.StripPrefix if the publisher's URLs have a
// prefix, or let it serve with ListenAndServe. Each push is answered:
//
//	204  the consumer acknowledged it (Delivery.Ack)
//	503  the consumer nacked it (Delivery.Nack; Retry-After: the delay, in
//	     whole seconds), no consumer acknowledged it within
//	     SubscriberOptions.AckTimeout, or its subscription or the
//	     Subscriber closed: the sender retries it
//	401  the signature is missing, does not match, or is stale (outside
//	     SubscriberOptions.Tolerance); the body says which
//	404  no subscription has the path (503 if one had it and closed:
//	     the consumer may be restarting it)
//	405  the method is not POST
//	413  the body is over SubscriberOptions.MaxBody
//
// The delivery's fields come from the Ferry-* or ce-* headers (both are
// understood, whichever format the sender used) and its other headers
// become the message's headers, their names in lower case, as HTTP/2
// sends them: the TraceParent header, for example, is "traceparent".
// Headers of the HTTP exchange rather than of the message are left out:
// Ferry-Signature, Authorization, User-Agent, Accept-Encoding, the
// framing headers, and Idempotency-Key when it is the message ID.
// Partition and Offset are -1; Redelivered is 0, because a retry is a new
// request the receiver cannot tell from a first attempt.
//
// Groups do not apply: a push is one request with one answer, so several
// subscriptions of one path share its pushes, each going to one of them
// whatever their group. To have every message reach two consumers, route
// it to two URLs. Nothing is stored: a push to a path no subscription has
// had is answered 404, which the publisher takes for a refusal (so
// Subscribe before serving), and one that arrives while the receiver is
// down fails to connect and is retried by the relay.
//
// # Options
//
// Publisher (Options), with their defaults:
//
//	BaseURL          none: every dest must then be an absolute URL
//	Secrets          none: pushes go unsigned
//	Format, Source   transport.FormatFerry; CloudEvents source "ferry"
//	Timeout          10s per push
//	RetryStatus      DefaultRetryStatus: 5xx, 408, 429
//	FollowRedirects  false
//	Header           none
//	MaxConnsPerHost  0, no limit
//	Client           a client of the publisher's own (see above)
//	Logger           slog.Default()
//
// Subscriber (SubscriberOptions):
//
//	Secrets      required, unless Unsigned
//	Unsigned     false
//	Tolerance    5m (negative: no timestamp check)
//	MaxBody      1 MiB, the outbox's default payload limit
//	AckTimeout   9s, a little under the publisher's Timeout
//	Logger       slog.Default()
//
// # Guarantees
//
// Delivery is at least once. Publish returns nil only after the receiver
// answered 2xx, which a Subscriber does only after the consumer's Ack; if
// that answer is lost (the connection breaks, the publisher times out),
// the relay pushes the message again and the consumer sees it twice, so
// consumers deduplicate by message ID. For the same reason an Ack or Nack
// of a push that was already answered (timed out) or whose sender went
// away returns nil: the message is coming again. A consumer that takes
// longer than SubscriberOptions.AckTimeout (or the publisher's Timeout)
// over a message gets it again while still working on it.
//
// Per-key order holds: the relay sends the next message of a key only
// after Publish returned for the one before, which for a webhook means
// after the receiver answered. Messages of different keys arrive
// concurrently, each on its own request.
//
// What does not survive the trip unchanged: header name case (a
// Subscriber delivers lower-case names); a message without a content-type
// header arrives with content-type application/octet-stream; several
// values of one HTTP header (from a sender other than ferry) are joined
// with ", ".
package webhook
