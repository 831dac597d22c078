package relay

import (
	"math/rand/v2"
	"time"
)

// Delay returns how long to wait before attempt+1, after attempt failed
// attempts: Initial doubling per attempt up to Max, then a random point in
// the upper half, so that messages that failed together do not retry in
// lockstep.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	return half + rand.N(half+1)
}
