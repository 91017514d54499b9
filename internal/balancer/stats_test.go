package balancer

import (
	"testing"
	"time"
)

// Status's percentiles cover the last minute: what was slow before the
// oldest mark kept no longer counts.
func TestLatencyWindow(t *testing.T) {
	var h latencyHist
	observe := func(d time.Duration, n int) {
		for range n {
			h.observe(d)
		}
	}
	near := func(got, want time.Duration) bool { return got >= want && got <= want*5/4 }

	observe(500*time.Millisecond, 100) // a slow spell at start
	if p := h.recentQuantile(0.5); !near(p, 500*time.Millisecond) {
		t.Fatalf("before any mark: p50 %v, want ~500ms (everything so far)", p)
	}
	h.mark()
	observe(time.Millisecond, 100)
	if p := h.recentQuantile(0.99); !near(p, time.Millisecond) {
		t.Fatalf("after a mark: p99 %v, want ~1ms (the slow spell is older than the mark)", p)
	}
	for range windowMarks {
		h.mark()
	}
	if p := h.recentQuantile(0.5); p != 0 {
		t.Fatalf("nothing observed for a whole window: p50 %v, want 0", p)
	}
	observe(20*time.Millisecond, 10)
	if p := h.recentQuantile(0.5); !near(p, 20*time.Millisecond) {
		t.Fatalf("p50 %v, want ~20ms", p)
	}
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	if total != 210 {
		t.Fatalf("the cumulative counts (Prometheus) hold %d observations, want 210", total)
	}
}
