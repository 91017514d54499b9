package dhcpd

import (
	"errors"
	"slices"
	"testing"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// scriptedWriter answers WriteBatch calls from a script of (n, err) pairs,
// then accepts everything.
type scriptedWriter struct {
	script []writeResult
	calls  int
}

type writeResult struct {
	n   int
	err error
}

func (w *scriptedWriter) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	w.calls++
	if len(w.script) == 0 {
		return len(ms), nil
	}
	r := w.script[0]
	w.script = w.script[1:]
	return r.n, r.err
}

func TestWriteBatch(t *testing.T) {
	errRoute := errors.New("sendmmsg: network is unreachable")
	tests := []struct {
		name       string
		msgs       int
		script     []writeResult
		wantSent   []int
		wantFailed []int
	}{
		{"all at once", 3, nil, []int{0, 1, 2}, nil},
		{"first refused, sendmmsg's -1", 3, []writeResult{{-1, errRoute}}, []int{1, 2}, []int{0}},
		{"middle refused", 3, []writeResult{{1, nil}, {-1, errRoute}}, []int{0, 2}, []int{1}},
		{"every one refused", 2, []writeResult{{-1, errRoute}, {-1, errRoute}}, nil, []int{0, 1}},
		{"count beyond the batch", 2, []writeResult{{7, nil}}, []int{0, 1}, nil},
		{"nothing sent, no error", 2, []writeResult{{0, nil}}, []int{1}, []int{0}},
		{"partial with error", 4, []writeResult{{2, errRoute}}, []int{0, 1, 3}, []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var sent, failed []int
			writeBatch(&scriptedWriter{script: tc.script}, make([]ipv4.Message, tc.msgs),
				func(i int) { sent = append(sent, i) },
				func(i int, err error) {
					if err == nil {
						t.Errorf("failed(%d) without an error", i)
					}
					failed = append(failed, i)
				})
			if !slices.Equal(sent, tc.wantSent) || !slices.Equal(failed, tc.wantFailed) {
				t.Errorf("sent %v failed %v, want sent %v failed %v", sent, failed, tc.wantSent, tc.wantFailed)
			}
		})
	}
}

// FuzzWriteBatch: whatever a socket answers, every message is reported
// exactly once, in order, and the loop ends.
func FuzzWriteBatch(f *testing.F) {
	f.Add(uint8(3), []byte{0xff, 1, 0})
	f.Add(uint8(1), []byte{0})
	f.Add(uint8(8), []byte{0x80, 0xff, 0x7f, 2})
	f.Fuzz(func(t *testing.T, msgs uint8, script []byte) {
		w := &scriptedWriter{}
		for _, b := range script {
			r := writeResult{n: int(int8(b))}
			if b&1 == 1 {
				r.err = errors.New("refused")
			}
			w.script = append(w.script, r)
		}
		seen := make([]int, 0, msgs)
		report := func(i int) { seen = append(seen, i) }
		writeBatch(w, make([]ipv4.Message, msgs), report, func(i int, _ error) { report(i) })
		for i, v := range seen {
			if v != i {
				t.Fatalf("messages reported %v, want 0..%d once each in order", seen, msgs-1)
			}
		}
		if len(seen) != int(msgs) {
			t.Fatalf("%d of %d messages reported", len(seen), msgs)
		}
		if w.calls > int(msgs)+len(script) {
			t.Fatalf("%d WriteBatch calls for %d messages", w.calls, msgs)
		}
	})
}

// setBroadcast lets a test socket send limited broadcasts out of eth0
// (the test namespaces have no default route).
func setBroadcast(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
		return err
	}
	return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "eth0")
}
