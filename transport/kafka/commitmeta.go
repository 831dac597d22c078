package kafka

import (
	"strconv"
	"strings"
)

// The consumer commits, with each partition's offset, the metadata string
// Kafka keeps next to it:
//
//	ferry1:<delivered>:<done>
//
// delivered is how far past the committed offset records were handed out
// (the highest such offset minus the committed one; -1 if none), so that a
// record handed out before a restart is marked Redelivered after it.
// done lists the offsets above the committed one that were acknowledged
// out of order, so that they are skipped, not redone, after a restart: as
// differences from the committed offset, single ("3") or ranges ("5-9"),
// separated by commas. "ferry1:6:2-3" with offset 4 committed means 6 and
// 7 are done, 5 is not, and 10 was the last handed out.
//
// Kafka bounds the metadata (offset.metadata.max.bytes, default 4096);
// done offsets that do not fit in maxMetaLen are left out and redone
// after a restart, which at-least-once delivery allows.
const (
	metaPrefix = "ferry1:"
	maxMetaLen = 2048
	// maxDone bounds what decodeMeta accepts, against a metadata string
	// that is not ferry's.
	maxDone = 1 << 16
)

// encodeMeta returns the metadata for committed offset off. done holds
// offsets above off in increasing order.
func encodeMeta(off, delivered int64, done []int64) string {
	var b strings.Builder
	b.WriteString(metaPrefix)
	b.WriteString(strconv.FormatInt(max(delivered-off, -1), 10))
	b.WriteByte(':')
	first := true
	for i := 0; i < len(done); {
		j := i
		for j+1 < len(done) && done[j+1] == done[j]+1 {
			j++
		}
		item := strconv.FormatInt(done[i]-off, 10)
		if j > i {
			item += "-" + strconv.FormatInt(done[j]-off, 10)
		}
		if b.Len()+len(item)+1 > maxMetaLen {
			break
		}
		if !first {
			b.WriteByte(',')
		}
		b.WriteString(item)
		first = false
		i = j + 1
	}
	return b.String()
}

// decodeMeta reads metadata written by encodeMeta for committed offset
// off. ok is false for metadata that is not ferry's (another client's,
// or none), which means nothing is known past the committed offset.
func decodeMeta(off int64, meta string) (delivered int64, done []int64, ok bool) {
	rest, found := strings.CutPrefix(meta, metaPrefix)
	if !found {
		return -1, nil, false
	}
	d, list, found := strings.Cut(rest, ":")
	if !found {
		return -1, nil, false
	}
	delta, err := strconv.ParseInt(d, 10, 64)
	if err != nil || delta < -1 {
		return -1, nil, false
	}
	delivered = off + delta
	if list == "" {
		return delivered, nil, true
	}
	prev := int64(0)
	for item := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil || a <= prev {
			return -1, nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil || b < a {
				return -1, nil, false
			}
		}
		if int64(len(done))+b-a+1 > maxDone {
			return -1, nil, false
		}
		for x := a; x <= b; x++ {
			done = append(done, off+x)
		}
		prev = b
	}
	return delivered, done, true
}
