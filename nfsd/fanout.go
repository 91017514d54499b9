package nfsd

import (
	"bufio"
	"encoding/binary"
	"errors"
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
// here; a record larger than maxRecord closes the connection.
type fanoutListener struct {
	net.Listener
	workers int
	// fast, if set, sees every NFS call first (with the client's address)
	// and may answer it itself (calls.go); false hands it to go-nfs.
	fast func(from net.Addr, rec []byte, send func([]byte) error) bool

	mu    sync.Mutex
	ready []net.Conn
}

const maxRecord = 16 << 20 // 16 MiB: well above the 1 MiB READ/WRITE of Linux and libnfs

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
		return c, nil
	}
	m := newFanout(c, l.workers, l.fast)
	l.mu.Lock()
	for _, v := range m.vconns[1:] {
		l.ready = append(l.ready, v)
	}
	l.mu.Unlock()
	return m.vconns[0], nil
}

type fanout struct {
	real   net.Conn
	wmu    sync.Mutex
	vconns []*vconn
	done   chan struct{}
	once   sync.Once
	fast   func(net.Addr, []byte, func([]byte) error) bool
	reads  chan struct{} // bounds calls answered at once by fast
}

func newFanout(c net.Conn, n int, fast func(net.Addr, []byte, func([]byte) error) bool) *fanout {
	n = max(n, 1)
	m := &fanout{real: c, done: make(chan struct{}), fast: fast, reads: make(chan struct{}, n)}
	for i := 0; i < n; i++ {
		m.vconns = append(m.vconns, &vconn{m: m, in: make(chan []byte, 1)})
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
	defer m.shutdown()
	br := bufio.NewReaderSize(m.real, 64<<10)
	for {
		rec, err := readRPCRecord(br)
		if err != nil {
			return
		}
		if m.fast != nil && isNFSCall(rec) {
			select {
			case m.reads <- struct{}{}:
			case <-m.done:
				return
			}
			go func() {
				defer func() { <-m.reads }()
				if !m.fast(m.real.RemoteAddr(), rec, m.send) {
					m.dispatch(rec)
				}
			}()
			continue
		}
		if !m.dispatch(rec) {
			return
		}
	}
}

// dispatch hands a record to the least busy go-nfs worker.
func (m *fanout) dispatch(rec []byte) bool {
	v := m.leastBusy()
	v.pending.Add(1)
	select {
	case v.in <- rec:
		return true
	case <-m.done:
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

var errRecordTooLarge = errors.New("nfsd: RPC record too large")

// readRPCRecord reads one record (all its fragments) and returns it framed
// as a single last fragment, the only form go-nfs reads.
func readRPCRecord(br *bufio.Reader) ([]byte, error) {
	out := make([]byte, 4, 4+512)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		if len(out)-4+n > maxRecord {
			return nil, errRecordTooLarge
		}
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(br, out[start:]); err != nil {
			return nil, err
		}
		if h&0x80000000 != 0 {
			binary.BigEndian.PutUint32(out, uint32(len(out)-4)|0x80000000)
			return out, nil
		}
	}
}

// vconn is one virtual connection go-nfs serves.
type vconn struct {
	m       *fanout
	in      chan []byte
	cur     []byte
	out     []byte
	pending atomic.Int32 // requests handed to it and not answered yet
}

func (v *vconn) Read(p []byte) (int, error) {
	for len(v.cur) == 0 {
		select {
		case rec := <-v.in:
			v.cur = rec
		case <-v.m.done:
			return 0, io.EOF
		}
	}
	n := copy(p, v.cur)
	v.cur = v.cur[n:]
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
