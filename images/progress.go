package images

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Progress is one report of a running import.
type Progress struct {
	Image string
	// Phase: "decompress" (compressed input bytes read), "extract" (file
	// content bytes written), "copy" (directory sources), "tar".
	Phase string
	Done  int64
	// Total is 0 when unknown (then there is no ETA).
	Total   int64
	Elapsed time.Duration
	// Final is set on the last report of a phase.
	Final bool
}

// Rate is bytes per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// ETA is the remaining time at the current rate, or -1 when unknown.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if p.Total <= 0 || r <= 0 || p.Done > p.Total {
		return -1
	}
	return time.Duration(float64(p.Total-p.Done) / r * float64(time.Second))
}

// ProgressPrinter returns a Progress callback writing to w: a redrawn bar
// with bytes, rate and ETA when w is a terminal, otherwise a plain line
// every few seconds and at the end of each phase.
func ProgressPrinter(w io.Writer) func(Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		tty = err == nil
	}
	var mu sync.Mutex
	var last time.Time
	interval := 5 * time.Second
	if tty {
		interval = 200 * time.Millisecond
	}
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if !p.Final && time.Since(last) < interval {
			return
		}
		last = time.Now()
		if tty {
			fmt.Fprintf(w, "\r\x1b[K%s", barLine(p, 30))
			if p.Final {
				fmt.Fprintln(w)
			}
			return
		}
		fmt.Fprintln(w, plainLine(p))
	}
}

func barLine(p Progress, width int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s ", p.Phase)
	if p.Total > 0 {
		frac := min(float64(p.Done)/float64(p.Total), 1)
		if width > 0 {
			n := int(frac * float64(width))
			fmt.Fprintf(&b, "[%s%s] ", strings.Repeat("=", n), strings.Repeat(" ", width-n))
		}
		fmt.Fprintf(&b, "%3.0f%% ", frac*100)
	}
	fmt.Fprintf(&b, "%s", HumanBytes(p.Done))
	if p.Total > 0 {
		fmt.Fprintf(&b, "/%s", HumanBytes(p.Total))
	}
	fmt.Fprintf(&b, "  %s/s", HumanBytes(int64(p.Rate())))
	if eta := p.ETA(); eta >= 0 && !p.Final {
		fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
	}
	if p.Final {
		fmt.Fprintf(&b, "  done in %s", p.Elapsed.Round(100*time.Millisecond))
	}
	return b.String()
}

func plainLine(p Progress) string {
	return fmt.Sprintf("image %s: %s", p.Image, strings.Join(strings.Fields(barLine(p, 0)), " "))
}

// HumanBytes formats a byte count in binary units (1.5 MiB), as image
// sizes and progress are shown.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// progressTracker turns byte counts from many goroutines into Progress
// reports, at most a few per second.
type progressTracker struct {
	image, phase string
	total        int64
	start        time.Time
	done         atomic.Int64
	lastReport   atomic.Int64
	fn           func(Progress)
	mu           sync.Mutex
}

func newTracker(fn func(Progress), image, phase string, total int64) *progressTracker {
	return &progressTracker{image: image, phase: phase, total: total, start: time.Now(), fn: fn}
}

func (t *progressTracker) add(n int64) {
	if t == nil || t.fn == nil {
		return
	}
	t.done.Add(n)
	now := time.Now().UnixNano()
	last := t.lastReport.Load()
	if now-last < int64(100*time.Millisecond) || !t.lastReport.CompareAndSwap(last, now) {
		return
	}
	t.report(false)
}

func (t *progressTracker) finish() {
	if t == nil || t.fn == nil {
		return
	}
	t.report(true)
}

func (t *progressTracker) report(final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fn(Progress{Image: t.image, Phase: t.phase, Done: t.done.Load(), Total: t.total, Elapsed: time.Since(t.start), Final: final})
}

// countingReader feeds a tracker with the bytes read through it.
type countingReader struct {
	r io.Reader
	t *progressTracker
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.add(int64(n))
	return n, err
}
