package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the HTTP header that carries a push's signature:
//
//	Ferry-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//
// See the package documentation for how to check it.
const SignatureHeader = "Ferry-Signature"

// DefaultTolerance is how far a push's signature timestamp may be from the
// receiver's clock before the push is refused as stale.
const DefaultTolerance = 5 * time.Minute

// The errors Verify returns, wrapped with a description of the problem;
// test for them with errors.Is.
var (
	// ErrNoSignature: the request has no Ferry-Signature header.
	ErrNoSignature = errors.New("webhook: no signature")
	// ErrBadSignature: the header is malformed, or no v1 signature in it
	// matches the body under any of the secrets.
	ErrBadSignature = errors.New("webhook: bad signature")
	// ErrStale: the signature is genuine but its timestamp is further
	// from now than the tolerance, as a replayed request's would be (or
	// the sender's clock is off).
	ErrStale = errors.New("webhook: stale signature")
)

// Sign returns the value of the Ferry-Signature header for body sent at
// t: the timestamp in Unix seconds and, for each secret, the hex
// HMAC-SHA256 of "<timestamp>.<body>". Several secrets give several v1
// entries, so receivers holding either the old or the new secret accept
// the push while a secret is being rotated.
func Sign(body []byte, secrets [][]byte, t time.Time) string {
	ts := strconv.AppendInt(nil, t.Unix(), 10)
	b := make([]byte, 0, 2+len(ts)+len(secrets)*(4+2*sha256.Size))
	b = append(b, "t="...)
	b = append(b, ts...)
	for _, secret := range secrets {
		b = append(b, ",v1="...)
		b = hex.AppendEncode(b, mac(secret, ts, body))
	}
	return string(b)
}

// mac is HMAC-SHA256(secret, ts "." body).
func mac(secret, ts, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(ts)
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a Ferry-Signature header value against the body the
// request carried: it succeeds when one of the header's v1 signatures is
// the HMAC of its timestamp and body under one of secrets, and the
// timestamp is within tolerance of now (in either direction). A tolerance
// of zero or less skips the timestamp check; do that only when something
// else prevents a recorded request from being replayed.
//
// The errors wrap ErrNoSignature, ErrBadSignature or ErrStale. Entries
// other than t and v1 are ignored, so that a future signature scheme can
// be sent next to v1 without breaking receivers.
func Verify(header string, body []byte, secrets [][]byte, tolerance time.Duration, now time.Time) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return fmt.Errorf("%w: the request has no %s header", ErrNoSignature, SignatureHeader)
	}
	if len(secrets) == 0 {
		return errors.New("webhook: Verify needs at least one secret")
	}
	var (
		ts   []byte
		sigs [][]byte
	)
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			if ts != nil {
				return fmt.Errorf("%w: %s has two timestamps", ErrBadSignature, SignatureHeader)
			}
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Errorf("%w: %s timestamp t=%q is not Unix seconds", ErrBadSignature, SignatureHeader, v)
			}
			ts = []byte(v)
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: %s v1=%.16q... is not a hex HMAC-SHA256", ErrBadSignature, SignatureHeader, v)
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == nil {
		return fmt.Errorf("%w: %s has no t= timestamp", ErrBadSignature, SignatureHeader)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: %s has no v1= signature", ErrBadSignature, SignatureHeader)
	}
	if !matches(sigs, secrets, ts, body) {
		return fmt.Errorf("%w: no v1 signature matches the body under the receiver's secrets (a different secret, or a body changed on the way)", ErrBadSignature)
	}
	if tolerance > 0 {
		unix, _ := strconv.ParseInt(string(ts), 10, 64)
		sent := time.Unix(unix, 0)
		if skew := now.Sub(sent); skew > tolerance || skew < -tolerance {
			return fmt.Errorf("%w: signed at %s, %s from the receiver's clock, beyond the tolerance of %s (a replayed request, or a clock that is off)",
				ErrStale, sent.UTC().Format(time.RFC3339), skew.Abs().Round(time.Second), tolerance)
		}
	}
	return nil
}

func matches(sigs, secrets [][]byte, ts, body []byte) bool {
	for _, secret := range secrets {
		want := mac(secret, ts, body)
		for _, sig := range sigs {
			if hmac.Equal(sig, want) {
				return true
			}
		}
	}
	return false
}
