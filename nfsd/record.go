package nfsd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// ONC RPC over TCP frames each record as fragments, each behind a 4-byte
// mark (length, top bit = last fragment). A hostile client can announce a
// large fragment and send it slowly, or send endless fragments of a record
// that never ends, on many connections at once: the reader therefore grows
// a record only as its bytes arrive, and every byte it holds is charged to
// one budget shared by all connections.

const (
	maxRecord = 16 << 20 // 16 MiB: well above the 1 MiB READ/WRITE of Linux and libnfs
	// maxFragments bounds the fragments of one record (clients send one;
	// empty fragments would otherwise make a record that never ends).
	maxFragments = 1024
	// readChunk is how much of a fragment is read before growing further.
	readChunk = 64 << 10
)

var (
	errRecordTooLarge = errors.New("nfsd: RPC record too large")
	errRecordMemory   = errors.New("nfsd: RPC record memory budget exhausted")
)

// recordBudget bounds the bytes of records read and not yet handled, over
// every connection. A nil budget bounds nothing.
type recordBudget struct {
	max  int64
	used atomic.Int64
}

func (b *recordBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *recordBudget) give(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// Used is the bytes currently charged.
func (b *recordBudget) inUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// record is one whole RPC record, framed as a single last fragment (the
// only form go-nfs reads), and the budget it holds.
type rpcRecord struct {
	b    []byte
	held int64
}

// DefaultRecordTimeout bounds the time from a record's first byte to its
// last (Config.RecordTimeout): a client sends a whole 1 MiB WRITE in
// milliseconds, so a record unfinished after this long holds its memory
// for nothing.
const DefaultRecordTimeout = 30 * time.Second

var errRecordTimeout = errors.New("nfsd: RPC record not finished in time")

// recordReader reads the records of one connection. held is what this
// connection has charged to the budget and not given back: releaseAll
// returns it when the connection ends, so a record dropped anywhere on the
// way is never charged for ever.
type recordReader struct {
	br     *bufio.Reader
	budget *recordBudget
	held   atomic.Int64
	// conn, if set, gets a read deadline while a record is under way.
	conn    interface{ SetReadDeadline(time.Time) error }
	timeout time.Duration
}

func (r *recordReader) take(n int64) bool {
	if !r.budget.take(n) {
		return false
	}
	r.held.Add(n)
	return true
}

// give returns up to n bytes of this connection's charge.
func (r *recordReader) give(n int64) {
	for n > 0 {
		h := r.held.Load()
		if h < n {
			n = h
		}
		if r.held.CompareAndSwap(h, h-n) {
			r.budget.give(n)
			return
		}
	}
}

func (r *recordReader) release(rec rpcRecord) { r.give(rec.held) }
func (r *recordReader) releaseAll()           { r.give(r.held.Load()) }

// next reads one record (all its fragments).
func (r *recordReader) next() (rec rpcRecord, err error) {
	out := make([]byte, 4, 4+512)
	if !r.take(int64(cap(out))) {
		return rpcRecord{}, errRecordMemory
	}
	held := int64(cap(out))
	defer func() {
		if err != nil {
			r.give(held)
		}
	}()
	if r.conn != nil && r.timeout > 0 {
		// The first header may take as long as the client is idle; the
		// rest of the record must follow promptly.
		if _, err := r.br.Peek(1); err != nil {
			return rpcRecord{}, err
		}
		_ = r.conn.SetReadDeadline(time.Now().Add(r.timeout))
		defer func() {
			_ = r.conn.SetReadDeadline(time.Time{})
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = errRecordTimeout
			}
		}()
	}
	for frag := 0; ; frag++ {
		if frag == maxFragments {
			return rpcRecord{}, errRecordTooLarge
		}
		var hdr [4]byte
		if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
			return rpcRecord{}, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		if len(out)-4+n > maxRecord {
			return rpcRecord{}, errRecordTooLarge
		}
		for n > 0 {
			chunk := min(n, readChunk)
			if need := len(out) + chunk; need > cap(out) {
				// Grow geometrically, but never past what the record
				// announced so far: the budget is charged for capacity.
				size := min(max(2*cap(out), need), len(out)+n)
				if !r.take(int64(size - cap(out))) {
					return rpcRecord{}, errRecordMemory
				}
				held += int64(size - cap(out))
				grown := make([]byte, len(out), size)
				copy(grown, out)
				out = grown
			}
			start := len(out)
			out = out[:start+chunk]
			if _, err := io.ReadFull(r.br, out[start:]); err != nil {
				return rpcRecord{}, err
			}
			n -= chunk
		}
		if h&0x80000000 != 0 {
			binary.BigEndian.PutUint32(out, uint32(len(out)-4)|0x80000000)
			return rpcRecord{b: out, held: held}, nil
		}
	}
}

// readRPCRecord reads one record with no budget (tests, clients).
func readRPCRecord(br *bufio.Reader) ([]byte, error) {
	rec, err := (&recordReader{br: br}).next()
	return rec.b, err
}
