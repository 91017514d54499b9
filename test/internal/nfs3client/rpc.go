// Package nfs3client is a small NFSv3 client for benchmarks: MOUNT, LOOKUP,
// READDIRPLUS, READ (several in flight on one connection, as a kernel
// client's readahead), CREATE, MKDIR, WRITE and COMMIT, over ONC RPC on TCP
// with AUTH_UNIX as root. Test code only.
package nfs3client

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A small ONC RPC client over TCP: record marking, AUTH_UNIX as root,
// replies matched by xid so several calls can be in flight on one
// connection (what a kernel client's readahead does). No retransmission:
// a benchmark must see errors, not hide them.

const (
	progNFS   = 100003
	progMount = 100005
)

type rpcConn struct {
	c    net.Conn
	wmu  sync.Mutex
	w    *bufio.Writer
	xid  atomic.Uint32
	mu   sync.Mutex
	wait map[uint32]chan rpcReply
	err  error
	cred []byte
}

type rpcReply struct {
	body []byte
	err  error
}

func dialRPC(dial DialFunc, addr string) (*rpcConn, error) {
	c, err := dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &rpcConn{c: c, w: bufio.NewWriterSize(c, 1<<16), wait: make(map[uint32]chan rpcReply)}
	r.xid.Store(uint32(time.Now().UnixNano()))
	// AUTH_UNIX: stamp, machine name, uid 0, gid 0, no extra groups.
	var e xdrEnc
	e.u32(uint32(time.Now().Unix()))
	e.str("nfsbench")
	e.u32(0)
	e.u32(0)
	e.u32(0)
	r.cred = e.b
	go r.readLoop()
	return r, nil
}

func (r *rpcConn) Close() error { return r.c.Close() }

func (r *rpcConn) readLoop() {
	br := bufio.NewReaderSize(r.c, 1<<20)
	var err error
	for {
		var rec []byte
		rec, err = readRecord(br)
		if err != nil {
			break
		}
		if len(rec) < 4 {
			err = errors.New("short reply")
			break
		}
		xid := binary.BigEndian.Uint32(rec)
		r.mu.Lock()
		ch := r.wait[xid]
		delete(r.wait, xid)
		r.mu.Unlock()
		if ch != nil {
			ch <- rpcReply{body: rec}
		}
	}
	r.mu.Lock()
	r.err = err
	for xid, ch := range r.wait {
		ch <- rpcReply{err: fmt.Errorf("connection: %w", err)}
		delete(r.wait, xid)
	}
	r.mu.Unlock()
}

func readRecord(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(br, out[start:]); err != nil {
			return nil, err
		}
		if h&0x80000000 != 0 {
			return out, nil
		}
	}
}

// call sends one request and returns the procedure's result bytes (after
// the accepted-success header).
func (r *rpcConn) call(prog, vers, proc uint32, args []byte) (*xdrDec, error) {
	xid := r.xid.Add(1)
	var e xdrEnc
	e.u32(xid)
	e.u32(0) // CALL
	e.u32(2) // RPC version
	e.u32(prog)
	e.u32(vers)
	e.u32(proc)
	e.u32(1) // AUTH_UNIX
	e.opaque(r.cred)
	e.u32(0) // verifier AUTH_NULL
	e.u32(0)
	e.b = append(e.b, args...)

	ch := make(chan rpcReply, 1)
	r.mu.Lock()
	if r.err != nil {
		r.mu.Unlock()
		return nil, r.err
	}
	r.wait[xid] = ch
	r.mu.Unlock()

	r.wmu.Lock()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(e.b))|0x80000000)
	_, err := r.w.Write(hdr[:])
	if err == nil {
		_, err = r.w.Write(e.b)
	}
	if err == nil {
		err = r.w.Flush()
	}
	r.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	rep := <-ch
	if rep.err != nil {
		return nil, rep.err
	}
	d := &xdrDec{b: rep.body}
	d.u32() // xid
	if d.u32() != 1 {
		return nil, errors.New("not a reply")
	}
	if st := d.u32(); st != 0 {
		return nil, fmt.Errorf("rpc denied (%d)", st)
	}
	d.u32()              // verifier flavor
	d.skip(int(d.u32())) // verifier body
	if st := d.u32(); st != 0 {
		return nil, fmt.Errorf("rpc not accepted: accept_stat %d", st)
	}
	return d, d.err
}

type xdrEnc struct{ b []byte }

func (e *xdrEnc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *xdrEnc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *xdrEnc) opaque(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}
func (e *xdrEnc) str(s string) { e.opaque([]byte(s)) }

type xdrDec struct {
	b   []byte
	err error
}

func (d *xdrDec) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		if d.err == nil {
			d.err = io.ErrUnexpectedEOF
		}
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *xdrDec) u32() uint32 {
	p := d.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (d *xdrDec) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *xdrDec) skip(n int) { d.take((n + 3) &^ 3) }

func (d *xdrDec) opaque() []byte {
	n := int(d.u32())
	p := d.take((n + 3) &^ 3)
	if p == nil {
		return nil
	}
	return p[:n]
}
