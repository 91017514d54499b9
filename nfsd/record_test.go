package nfsd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzRecordReader feeds fragment storms (many, empty, huge-announced,
// truncated fragments) to the record reader under a small budget: it must
// never panic, never hold more than the budget, and give every byte back.
func FuzzRecordReader(f *testing.F) {
	frag := func(n uint32, last bool, body []byte) []byte {
		if last {
			n |= 0x80000000
		}
		return append(binary.BigEndian.AppendUint32(nil, n), body...)
	}
	f.Add(frag(4, true, []byte("abcd")))
	f.Add(bytes.Repeat(frag(0, false, nil), 2000))
	f.Add(frag(0x7fffffff, true, []byte("x")))
	f.Add(append(frag(3, false, []byte("abc")), frag(2, true, []byte("de"))...))
	f.Add(frag(200000, false, bytes.Repeat([]byte{1}, 70000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		budget := &recordBudget{max: 100 << 10}
		r := &recordReader{br: bufio.NewReaderSize(bytes.NewReader(data), 4096), budget: budget}
		var kept []rpcRecord
		for {
			rec, err := r.next()
			if budget.inUse() > budget.max {
				t.Fatalf("%d bytes held over a budget of %d", budget.inUse(), budget.max)
			}
			if err != nil {
				break
			}
			if h := binary.BigEndian.Uint32(rec.b); h&0x80000000 == 0 || int(h&0x7fffffff) != len(rec.b)-4 {
				t.Fatalf("record mark %#x for %d bytes", h, len(rec.b)-4)
			}
			if rec.held < int64(cap(rec.b)) {
				t.Fatalf("record holds %d of the budget for %d bytes of capacity", rec.held, cap(rec.b))
			}
			kept = append(kept, rec)
		}
		if len(kept) > 0 {
			r.release(kept[0])
		}
		r.releaseAll()
		if budget.inUse() != 0 {
			t.Fatalf("%d bytes still charged after the connection ended", budget.inUse())
		}
	})
}

// TestRecordBudgetShared: connections share one budget; a record that does
// not fit fails with errRecordMemory, and an ended connection's bytes are
// free for the next.
func TestRecordBudgetShared(t *testing.T) {
	budget := &recordBudget{max: 1536 << 10}
	partial := func() io.Reader { // 700 KiB of a record announced as 1 MiB
		b := binary.BigEndian.AppendUint32(nil, 1<<20|0x80000000)
		return io.MultiReader(bytes.NewReader(append(b, make([]byte, 700<<10)...)), blockingReader{})
	}
	a := &recordReader{br: bufio.NewReader(partial()), budget: budget}
	done := make(chan error, 1)
	go func() { _, err := a.next(); done <- err }()
	// Wait until a holds its 700 KiB (at most 1 MiB of capacity).
	for budget.inUse() < 700<<10 {
		select {
		case err := <-done:
			t.Fatalf("first reader ended early: %v", err)
		default:
		}
	}
	b := &recordReader{br: bufio.NewReader(partial()), budget: budget}
	if _, err := b.next(); !errors.Is(err, errRecordMemory) {
		t.Fatalf("second record within a full budget: %v", err)
	}
	if got := b.held.Load(); got != 0 {
		t.Errorf("refused reader still holds %d", got)
	}
	a.releaseAll()
	if budget.inUse() != 0 {
		t.Errorf("%d still charged after releaseAll", budget.inUse())
	}
}

// blockingReader never returns: a client that stopped sending.
type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { select {} }
