package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	signedAt = time.Unix(1767225600, 0)
	body     = []byte(`{"order":7}`)
)

// TestSignKnownVector pins the signature to values computed independently
// (Python's hmac module), so the scheme the docs describe cannot drift.
func TestSignKnownVector(t *testing.T) {
	got := Sign(body, [][]byte{[]byte("whsec_test"), []byte("old secret")}, signedAt)
	want := "t=1767225600," +
		"v1=a158c793fd917b2b06632cb2cdfdebfcefd3863b4ebfad11972831414155335c," +
		"v1=8e4ee951296e3adde40b4f392b041eb529f624a9be04a58d4225174a1cdb2bcc"
	if got != want {
		t.Errorf("Sign =\n%s\nwant\n%s", got, want)
	}
}

func TestVerify(t *testing.T) {
	newSecret, oldSecret := []byte("new"), []byte("old")
	both := Sign(body, [][]byte{newSecret, oldSecret}, signedAt)
	onlyOld := Sign(body, [][]byte{oldSecret}, signedAt)
	now := signedAt.Add(time.Minute)

	tests := []struct {
		name    string
		header  string
		body    []byte
		secrets [][]byte
		now     time.Time
		want    error
		msg     string
	}{
		{name: "ok", header: both, secrets: [][]byte{newSecret}},
		{name: "receiver has the old secret only", header: both, secrets: [][]byte{oldSecret}},
		{name: "receiver rotated first", header: onlyOld, secrets: [][]byte{newSecret, oldSecret}},
		{name: "spaces and unknown schemes ignored", header: " t=1767225600, v0=abc, " + strings.TrimPrefix(both, "t=1767225600,"), secrets: [][]byte{newSecret}},
		{name: "missing", header: "", secrets: [][]byte{newSecret}, want: ErrNoSignature, msg: "no Ferry-Signature header"},
		{name: "wrong secret", header: onlyOld, secrets: [][]byte{newSecret}, want: ErrBadSignature, msg: "no v1 signature matches"},
		{name: "body changed", header: both, body: []byte(`{"order":8}`), secrets: [][]byte{newSecret}, want: ErrBadSignature, msg: "no v1 signature matches"},
		{name: "timestamp changed", header: strings.Replace(both, "t=1767225600", "t=1767225601", 1), secrets: [][]byte{newSecret}, want: ErrBadSignature},
		{name: "no timestamp", header: strings.TrimPrefix(both, "t=1767225600,"), secrets: [][]byte{newSecret}, want: ErrBadSignature, msg: "no t= timestamp"},
		{name: "bad timestamp", header: "t=yesterday,v1=00", secrets: [][]byte{newSecret}, want: ErrBadSignature, msg: "not Unix seconds"},
		{name: "two timestamps", header: "t=1,t=2," + strings.TrimPrefix(both, "t=1767225600,"), secrets: [][]byte{newSecret}, want: ErrBadSignature, msg: "two timestamps"},
		{name: "no v1", header: "t=1767225600", secrets: [][]byte{newSecret}, want: ErrBadSignature, msg: "no v1= signature"},
		{name: "v1 not hex", header: "t=1767225600,v1=zz", secrets: [][]byte{newSecret}, want: ErrBadSignature, msg: "not a hex HMAC-SHA256"},
		{name: "stale", header: both, secrets: [][]byte{newSecret}, now: signedAt.Add(6 * time.Minute), want: ErrStale, msg: "6m0s from the receiver's clock"},
		{name: "from the future", header: both, secrets: [][]byte{newSecret}, now: signedAt.Add(-6 * time.Minute), want: ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.body
			if b == nil {
				b = body
			}
			n := tt.now
			if n.IsZero() {
				n = now
			}
			err := Verify(tt.header, b, tt.secrets, DefaultTolerance, n)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Verify: %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestVerifyForgedStaleIsBad(t *testing.T) {
	// A forged request gets told its signature is bad, never that it is
	// merely late: staleness is checked only for genuine signatures.
	h := Sign(body, [][]byte{[]byte("attacker")}, signedAt)
	err := Verify(h, body, [][]byte{[]byte("real")}, time.Minute, signedAt.Add(time.Hour))
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify: %v, want ErrBadSignature", err)
	}
}

func TestVerifyWithoutTolerance(t *testing.T) {
	h := Sign(body, [][]byte{[]byte("s")}, signedAt)
	if err := Verify(h, body, [][]byte{[]byte("s")}, 0, signedAt.Add(1000*time.Hour)); err != nil {
		t.Fatalf("Verify with tolerance 0: %v", err)
	}
	if err := Verify(h, body, nil, 0, signedAt); err == nil || errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify without secrets: %v, want an error about the missing secrets", err)
	}
}

func TestSignEmptyBody(t *testing.T) {
	h := Sign(nil, [][]byte{[]byte("s")}, signedAt)
	if err := Verify(h, []byte{}, [][]byte{[]byte("s")}, time.Minute, signedAt); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}
