package nfsd

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// go-nfs handles the requests of one TCP connection one after the other,
// so a client's pipelined READs wait for each other (and for every fsync
// of a WRITE ahead of them). ONC RPC over TCP lets replies come back in any
// order (they carry the request's xid), which is how knfsd serves one
// connection from many threads and what nconnect does with several
// connections. fanoutListener does the same below go-nfs: each client
// connection becomes several virtual connections, each served by its own
// go-nfs goroutine; whole RPC records are handed to the least busy one and
// the replies are written back to the client record by record. Clients
// already wait for a reply before sending anything that depends on it.
//
// Records split into several fragments (which go-nfs refuses) are joined
// here (record.go); a record larger than maxRecord, or one that does not
// fit in what is left of the records' memory budget, closes the connection.
// ConnWorkers 1 still goes through here, with one worker: this is where
// records are bounded and connections proven (connguard.go).
type fanoutListener struct {
	net.Listener
	workers int
	guard   *connGuard // nil: no budget, no proving (tests)
	// fast, if set, sees every NFS call first (with the client's address)
	// and may answer it itself (calls.go); false hands it to go-nfs.
	fast func(from net.Addr, rec []byte, send func([]byte) error) bool
	// quick reports a call that never waits for a flush to the disk; nil:
	// none is (see readLoop).
	quick func(rec []byte) bool

	mu    sync.Mutex
	ready []net.Conn
}

func (l *fanoutListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.ready) > 0 {
		c := l.ready[0]
		l.ready = l.ready[1:]
		l.mu.Unlock()
		return c, nil
	}
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.workers <= 1 && l.fast == nil {
		// go-nfs alone, one request at a time (for comparison), behind
		// the record layer's bounds.
		return newFanout(c, 1, nil, nil, l.guard).vconns[0], nil
	}
	m := newFanout(c, l.workers, l.fast, l.quick, l.guard)
	l.mu.Lock()
	for _, v := range m.vconns[1:] {
		l.ready = append(l.ready, v)
	}
	l.mu.Unlock()
	return m.vconns[0], nil
}

type fanout struct {
	real   net.Conn
	rr     *recordReader
	guard  *connGuard
	wmu    sync.Mutex
	vconns []*vconn
	done   chan struct{}
	once   sync.Once
	fast   func(net.Addr, []byte, func([]byte) error) bool
	quick  func([]byte) bool
	reads  chan struct{} // bounds calls answered at once by fast
}

func newFanout(c net.Conn, n int, fast func(net.Addr, []byte, func([]byte) error) bool, quick func([]byte) bool, g *connGuard) *fanout {
	n = max(n, 1)
	m := &fanout{real: c, done: make(chan struct{}), fast: fast, quick: quick, reads: make(chan struct{}, n), guard: g}
	m.rr = &recordReader{br: bufio.NewReaderSize(c, 64<<10), budget: g.budget(), conn: c, timeout: g.recordTimeout()}
	for i := 0; i < n; i++ {
		m.vconns = append(m.vconns, &vconn{m: m, in: make(chan rpcRecord, 1)})
	}
	go m.readLoop()
	return m
}

func (m *fanout) shutdown() {
	m.once.Do(func() {
		close(m.done)
		m.real.Close()
	})
}

func (m *fanout) readLoop() {
	defer func() {
		m.shutdown()
		// Whatever records are still queued die with the connection.
		m.rr.releaseAll()
	}()
	for {
		rec, err := m.rr.next()
		if err != nil {
			m.guard.readFailed(m.real, err)
			return
		}
		m.guard.recordSeen(m.real, rec.b)
		if m.fast != nil && isNFSCall(rec.b) {
			select {
			case m.reads <- struct{}{}:
			case <-m.done:
				m.rr.release(rec)
				return
			}
			if m.alone() && m.quick != nil && m.quick(rec.b) {
				m.answer(rec)
				continue
			}
			go m.answer(rec)
			continue
		}
		if !m.dispatch(rec) {
			return
		}
	}
}

// alone reports a call that arrived on an idle connection: none other is
// being answered (the caller holds one slot of reads) and no other record
// has arrived behind it. The reading goroutine then answers it itself, as
// a sequential client (tar, find, a shell loop) has it: handing each call
// to a new goroutine woke another thread per call, which on the project's
// 2-core machine cost more CPU than the calls (the nfs bench's tar row:
// 2.9 s of server CPU against 2.4 s answered here; GOMAXPROCS=1 gave 2.2).
// A call that may wait for the disk to flush (quick says which) still gets
// its own goroutine: records that arrive meanwhile must not wait behind an
// fsync. Concurrent callers — a pipelined stream, a booting node's many
// processes — arrive as a burst or while calls are being answered and go
// on being answered in parallel.
func (m *fanout) alone() bool {
	return len(m.reads) == 1 && m.rr.br.Buffered() == 0
}

// answer answers one NFS call (by fast or a go-nfs worker) and frees its
// slot.
func (m *fanout) answer(rec rpcRecord) {
	defer func() { <-m.reads }()
	if m.answerFast(rec) {
		m.rr.release(rec)
		return
	}
	m.dispatch(rec)
}

// answerFast runs fast on one record; a panic in it is contained to the
// request (the connection is closed, the process lives on).
func (m *fanout) answerFast(rec rpcRecord) (answered bool) {
	defer func() {
		if v := recover(); v != nil {
			m.guard.panicked("fast path", m.real, v)
			m.shutdown()
			answered = true
		}
	}()
	return m.fast(m.real.RemoteAddr(), rec.b, m.send)
}

// dispatch hands a record to the least busy go-nfs worker, if go-nfs may
// decode it (admitGoNFS).
func (m *fanout) dispatch(rec rpcRecord) bool {
	switch xid, a := admitGoNFS(rec.b); a {
	case admitGarbage:
		m.rr.release(rec)
		m.guard.refusedCall(m.real, a)
		return m.send(garbageArgsReply(xid)) == nil
	case admitDrop:
		m.rr.release(rec)
		m.guard.refusedCall(m.real, a)
		m.shutdown()
		return false
	}
	v := m.leastBusy()
	v.pending.Add(1)
	select {
	case v.in <- rec:
		return true
	case <-m.done:
		m.rr.release(rec)
		return false
	}
}

// send writes one whole reply record.
func (m *fanout) send(rec []byte) error {
	m.wmu.Lock()
	_, err := m.real.Write(rec)
	m.wmu.Unlock()
	if err != nil {
		m.shutdown()
	}
	return err
}

// isNFSCall: the calls fast sees (NFSv3, any procedure).
func isNFSCall(rec []byte) bool {
	return len(rec) >= 28 &&
		binary.BigEndian.Uint32(rec[8:]) == 0 && // CALL
		binary.BigEndian.Uint32(rec[16:]) == nfsProgram &&
		binary.BigEndian.Uint32(rec[20:]) == 3
}

func isNFSProc(rec []byte, proc uint32) bool {
	return len(rec) >= 28 &&
		binary.BigEndian.Uint32(rec[8:]) == 0 && // CALL
		binary.BigEndian.Uint32(rec[16:]) == nfsProgram &&
		binary.BigEndian.Uint32(rec[20:]) == 3 &&
		binary.BigEndian.Uint32(rec[24:]) == proc
}

func (m *fanout) leastBusy() *vconn {
	best := m.vconns[0]
	for _, v := range m.vconns[1:] {
		if v.pending.Load() < best.pending.Load() {
			best = v
		}
	}
	return best
}

// vconn is one virtual connection go-nfs serves.
type vconn struct {
	m       *fanout
	in      chan rpcRecord
	rec     rpcRecord // the record being read, released once read whole
	cur     []byte
	out     []byte
	pending atomic.Int32 // requests handed to it and not answered yet
}

func (v *vconn) Read(p []byte) (int, error) {
	for len(v.cur) == 0 {
		select {
		case rec := <-v.in:
			v.rec, v.cur = rec, rec.b
		case <-v.m.done:
			return 0, io.EOF
		}
	}
	n := copy(p, v.cur)
	v.cur = v.cur[n:]
	if len(v.cur) == 0 {
		v.m.rr.release(v.rec)
		v.rec, v.cur = rpcRecord{}, nil
	}
	return n, nil
}

// Write passes go-nfs's output on whole fragments at a time, so replies of
// different virtual connections never interleave on the wire.
func (v *vconn) Write(p []byte) (int, error) {
	total := len(p)
	if len(v.out) == 0 {
		// Common case: the data holds whole fragments; write them
		// without copying.
		for len(p) >= 4 {
			h := binary.BigEndian.Uint32(p)
			n := 4 + int(h&0x7fffffff)
			if len(p) < n {
				break
			}
			if err := v.send(p[:n], h); err != nil {
				return 0, err
			}
			p = p[n:]
		}
		if len(p) == 0 {
			return total, nil
		}
	}
	v.out = append(v.out, p...)
	for len(v.out) >= 4 {
		h := binary.BigEndian.Uint32(v.out)
		n := 4 + int(h&0x7fffffff)
		if len(v.out) < n {
			break
		}
		if err := v.send(v.out[:n], h); err != nil {
			return 0, err
		}
		v.out = v.out[n:]
	}
	if len(v.out) == 0 {
		v.out = nil
	}
	return total, nil
}

func (v *vconn) send(frag []byte, h uint32) error {
	v.m.wmu.Lock()
	_, err := v.m.real.Write(frag)
	v.m.wmu.Unlock()
	if err != nil {
		v.m.shutdown()
		return err
	}
	if h&0x80000000 != 0 {
		v.pending.Add(-1)
	}
	return nil
}

// Close: go-nfs closes a connection at EOF or when a request broke the
// stream; either way the client connection goes.
func (v *vconn) Close() error {
	v.m.shutdown()
	return nil
}

func (v *vconn) LocalAddr() net.Addr                { return v.m.real.LocalAddr() }
func (v *vconn) RemoteAddr() net.Addr               { return v.m.real.RemoteAddr() }
func (v *vconn) SetDeadline(t time.Time) error      { return nil }
func (v *vconn) SetReadDeadline(t time.Time) error  { return nil }
func (v *vconn) SetWriteDeadline(t time.Time) error { return nil }
