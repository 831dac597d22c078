package kafka

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestCommitMeta(t *testing.T) {
	for _, tc := range []struct {
		off, delivered int64
		done           []int64
		meta           string
	}{
		{5, 9, []int64{6, 7}, "ferry1:4:1-2"},
		{5, 4, nil, "ferry1:-1:"},
		{0, 10, []int64{1, 3, 4, 5, 9}, "ferry1:10:1,3-5,9"},
		{1 << 40, 1<<40 + 2, []int64{1<<40 + 2}, "ferry1:2:2"},
	} {
		if got := encodeMeta(tc.off, tc.delivered, tc.done); got != tc.meta {
			t.Errorf("encodeMeta(%d, %d, %v) = %q, want %q", tc.off, tc.delivered, tc.done, got, tc.meta)
		}
		delivered, done, ok := decodeMeta(tc.off, tc.meta)
		if !ok || delivered != max(tc.delivered, tc.off-1) || !slices.Equal(done, tc.done) {
			t.Errorf("decodeMeta(%d, %q) = %d %v %v", tc.off, tc.meta, delivered, done, ok)
		}
	}
}

func TestCommitMetaTruncates(t *testing.T) {
	var done []int64
	for i := int64(1); i < 5000; i += 2 {
		done = append(done, i) // no ranges: the longest encoding
	}
	meta := encodeMeta(0, 6000, done)
	if len(meta) > maxMetaLen {
		t.Fatalf("metadata is %d bytes, over %d", len(meta), maxMetaLen)
	}
	_, got, ok := decodeMeta(0, meta)
	if !ok || len(got) == 0 || !slices.Equal(got, done[:len(got)]) {
		t.Errorf("truncated metadata decodes to %d offsets (ok %v), want a prefix of the done offsets", len(got), ok)
	}
}

func TestCommitMetaForeign(t *testing.T) {
	for _, meta := range []string{"", "member-1", "ferry1:", "ferry1:x:", "ferry1:1:3,2", "ferry1:1:5-3", "ferry1:1:0",
		"ferry1:1:1-" + fmt.Sprint(maxDone+5), "ferry1:-2:", strings.Repeat("ferry1:1:1,", 3)} {
		if _, _, ok := decodeMeta(10, meta); ok {
			t.Errorf("decodeMeta(%q) accepted it", meta)
		}
	}
}
