package balancer

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Bodies and tunnels are bounded by inactivity, not by their length: a
// source that sends nothing for a whole idle timeout ends the copy, a slow
// one that keeps moving does not. A destination that takes nothing for
// twice the idle timeout ends it too.

// spliceStep is the most one step of a copy moves; each step splices.
const spliceStep = 64 << 10

var errTunnelIdle = errors.New("tunnel idle both ways")

// copyStep moves up to n bytes from src to dst with fresh deadlines.
// quiet reports that the read deadline (not the write one) ended the step:
// then nothing is lost in flight (a splice reads only once the previous
// bytes are written), and the copy may go on. got > 0 with quiet means the
// source moved within the idle timeout.
func copyStep(src, dst *net.TCPConn, n int64, idle time.Duration) (got int64, quiet bool, err error) {
	start := time.Now()
	src.SetReadDeadline(start.Add(idle))
	dst.SetWriteDeadline(start.Add(2 * idle))
	got, err = dst.ReadFrom(&io.LimitedReader{R: src, N: n})
	if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(start) < idle*3/2 {
		return got, true, nil
	}
	return got, false, err
}

// idleCopy copies n bytes (n < 0: to EOF) from src to dst in steps, until
// a step moves nothing in the idle timeout. It returns what it moved;
// short of n with a nil error means src ended. The deadlines are cleared
// afterwards: keep-alive and pooled connections set their own on next use.
func idleCopy(src, dst *net.TCPConn, n int64, idle time.Duration) (int64, error) {
	defer clearDeadlines(src, dst)
	var total int64
	for n < 0 || total < n {
		step := int64(spliceStep)
		if n >= 0 {
			step = min(step, n-total)
		}
		got, quiet, err := copyStep(src, dst, step, idle)
		total += got
		switch {
		case err != nil:
			return total, err
		case quiet && got == 0:
			return total, os.ErrDeadlineExceeded
		case !quiet && got < step:
			return total, nil // src ended
		}
	}
	return total, nil
}

func clearDeadlines(src, dst *net.TCPConn) {
	src.SetReadDeadline(time.Time{})
	dst.SetWriteDeadline(time.Time{})
}

// bodyDeadlines pushes a buffered (chunked) copy's deadlines ahead of its
// progress, at most every idle/8 so many small chunks cost few timer
// updates.
type bodyDeadlines struct {
	src, dst *net.TCPConn
	idle     time.Duration
	next     int64 // unix ns after which push moves them again
}

func (d *bodyDeadlines) push() {
	now := time.Now()
	if now.UnixNano() < d.next {
		return
	}
	d.src.SetReadDeadline(now.Add(d.idle))
	d.dst.SetWriteDeadline(now.Add(2 * d.idle))
	d.next = now.Add(d.idle / 8).UnixNano()
}

func (d *bodyDeadlines) clear() { clearDeadlines(d.src, d.dst) }

// tunnelHalf copies src to dst until src ends or fails, or a whole idle
// timeout passes with nothing moving either way. quiet[me] says this half
// moved nothing in its last idle window, quiet[1-me] the other half; the
// half that finds both quiet ends the tunnel.
func tunnelHalf(src, dst *net.TCPConn, idle time.Duration, quiet *[2]atomic.Bool, me int) error {
	for {
		got, timedOut, err := copyStep(src, dst, spliceStep, idle)
		if got > 0 {
			quiet[me].Store(false)
		}
		switch {
		case err != nil:
			return err
		case !timedOut && got < spliceStep:
			quiet[me].Store(true) // ended: no more traffic this way
			return nil
		case timedOut && got == 0:
			quiet[me].Store(true)
			if quiet[1-me].Load() {
				return errTunnelIdle
			}
		}
	}
}
