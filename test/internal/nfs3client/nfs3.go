package nfs3client

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// NFSv3 procedures the benchmarks use, on rpcConn.

// Error is an NFS3 status other than NFS3_OK.
type Error uint32

func (e Error) Error() string { return fmt.Sprintf("NFS3 status %d", uint32(e)) }

// NFS3 values the callers test for.
const (
	ErrStale Error = 70 // NFS3ERR_STALE
	FtypeReg       = 1  // NF3REG
	FtypeDir       = 2  // NF3DIR
)

// Fattr is the part of fattr3 the benchmarks use.
type Fattr struct {
	Type uint32
	Mode uint32
	Size uint64
	ID   uint64
}

func (d *xdrDec) fattr() Fattr {
	var a Fattr
	a.Type = d.u32()
	a.Mode = d.u32()
	d.u32() // nlink
	d.u32() // uid
	d.u32() // gid
	a.Size = d.u64()
	d.u64() // used
	d.u64() // rdev
	d.u64() // fsid
	a.ID = d.u64()
	d.take(24) // atime mtime ctime
	return a
}

func (d *xdrDec) postOpAttr() (Fattr, bool) {
	if d.u32() == 0 {
		return Fattr{}, false
	}
	return d.fattr(), true
}

func (d *xdrDec) wcc() {
	if d.u32() != 0 {
		d.take(24)
	}
	d.postOpAttr()
}

func (d *xdrDec) status() error {
	st := d.u32()
	if d.err != nil {
		return d.err
	}
	if st != 0 {
		return Error(st)
	}
	return nil
}

// Client is one mounted export: a MOUNT connection is used once, NFS
// calls go over one connection.
type Client struct {
	r    *rpcConn
	Root []byte // the export's root file handle
}

// DialFunc opens a TCP connection (net.Dial's shape). A caller passes its
// own to dial from another network namespace or source address.
type DialFunc func(network, addr string) (net.Conn, error)

func defaultDial(network, addr string) (net.Conn, error) {
	return net.DialTimeout(network, addr, 5*time.Second)
}

// Mount asks the MOUNT service at mountAddr for path and connects to the
// NFS service at nfsAddr.
func Mount(nfsAddr, mountAddr, path string) (*Client, error) {
	return MountDial(defaultDial, nfsAddr, mountAddr, path)
}

// MountDial is Mount with the caller's dialer.
func MountDial(dial DialFunc, nfsAddr, mountAddr, path string) (*Client, error) {
	m, err := dialRPC(dial, mountAddr)
	if err != nil {
		return nil, fmt.Errorf("dial mount %s: %w", mountAddr, err)
	}
	defer m.Close()
	var e xdrEnc
	e.str(path)
	d, err := m.call(progMount, 3, 1, e.b)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", path, err)
	}
	if st := d.u32(); st != 0 {
		return nil, fmt.Errorf("mount %s: status %d", path, st)
	}
	root := append([]byte(nil), d.opaque()...)
	r, err := dialRPC(dial, nfsAddr)
	if err != nil {
		return nil, fmt.Errorf("dial nfs %s: %w", nfsAddr, err)
	}
	return &Client{r: r, Root: root}, nil
}

// Close closes the NFS connection.
func (c *Client) Close() { c.r.Close() }

// SetDeadline bounds every call in flight and to come: past t they fail
// (the client does not retransmit; a benchmark must see a stall).
func (c *Client) SetDeadline(t time.Time) error { return c.r.c.SetDeadline(t) }

// Lookup is LOOKUP of name in dir: the handle and, if sent, attributes.
func (c *Client) Lookup(dir []byte, name string) ([]byte, Fattr, error) {
	var e xdrEnc
	e.opaque(dir)
	e.str(name)
	d, err := c.r.call(progNFS, 3, 3, e.b)
	if err != nil {
		return nil, Fattr{}, err
	}
	if err := d.status(); err != nil {
		return nil, Fattr{}, err
	}
	fh := append([]byte(nil), d.opaque()...)
	a, _ := d.postOpAttr()
	return fh, a, d.err
}

// DirEntry is one READDIRPLUS entry; FH is nil when the server sent none.
type DirEntry struct {
	Name    string
	FH      []byte
	Attr    Fattr
	HasAttr bool // Attr came with the entry
}

// Readdirplus lists a whole directory with the sizes a Linux client asks
// for (dircount 64 KiB, maxcount 256 KiB).
func (c *Client) Readdirplus(dir []byte) ([]DirEntry, error) {
	var out []DirEntry
	var cookie, verf uint64
	for {
		var e xdrEnc
		e.opaque(dir)
		e.u64(cookie)
		e.u64(verf)
		e.u32(64 << 10)
		e.u32(256 << 10)
		d, err := c.r.call(progNFS, 3, 17, e.b)
		if err != nil {
			return nil, err
		}
		if err := d.status(); err != nil {
			return nil, err
		}
		d.postOpAttr()
		verf = d.u64()
		n := 0
		for d.u32() != 0 {
			d.u64() // fileid
			name := string(d.opaque())
			cookie = d.u64()
			a, has := d.postOpAttr()
			var fh []byte
			if d.u32() != 0 {
				fh = append([]byte(nil), d.opaque()...)
			}
			n++
			if name == "." || name == ".." {
				continue
			}
			out = append(out, DirEntry{Name: name, FH: fh, Attr: a, HasAttr: has})
		}
		eof := d.u32() != 0
		if d.err != nil {
			return nil, d.err
		}
		if eof {
			return out, nil
		}
		if n == 0 {
			return nil, fmt.Errorf("readdirplus: no progress and no eof")
		}
	}
}

// Read is one READ: how many bytes came and whether it reached the end.
func (c *Client) Read(fh []byte, off uint64, count uint32) (int, bool, error) {
	var e xdrEnc
	e.opaque(fh)
	e.u64(off)
	e.u32(count)
	d, err := c.r.call(progNFS, 3, 6, e.b)
	if err != nil {
		return 0, false, err
	}
	if err := d.status(); err != nil {
		return 0, false, err
	}
	d.postOpAttr()
	d.u32() // count
	eof := d.u32() != 0
	data := d.opaque()
	return len(data), eof, d.err
}

// ReadFile reads size bytes with up to depth READs in flight.
func (c *Client) ReadFile(fh []byte, size uint64, chunk uint32, depth int) (uint64, error) {
	if size == 0 {
		_, _, err := c.Read(fh, 0, chunk)
		return 0, err
	}
	var next atomic.Uint64
	var total atomic.Uint64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := 0; i < depth; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				off := next.Add(uint64(chunk)) - uint64(chunk)
				if off >= size {
					return
				}
				n, _, err := c.Read(fh, off, chunk)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				total.Add(uint64(n))
			}
		}()
		if uint64(chunk)*uint64(i+1) >= size {
			break
		}
	}
	wg.Wait()
	return total.Load(), first
}

// Create is a GUARDED CREATE of name in dir with mode.
func (c *Client) Create(dir []byte, name string, mode uint32) ([]byte, error) {
	var e xdrEnc
	e.opaque(dir)
	e.str(name)
	e.u32(1)    // GUARDED
	e.u32(1)    // mode follows
	e.u32(mode) //
	e.u32(0)    // uid
	e.u32(0)    // gid
	e.u32(0)    // size
	e.u32(0)    // atime: don't change
	e.u32(0)    // mtime: don't change
	return c.newObj(8, e.b, dir, name)
}

// Mkdir is MKDIR of name in dir with mode.
func (c *Client) Mkdir(dir []byte, name string, mode uint32) ([]byte, error) {
	var e xdrEnc
	e.opaque(dir)
	e.str(name)
	e.u32(1)
	e.u32(mode)
	e.u32(0)
	e.u32(0)
	e.u32(0)
	e.u32(0)
	e.u32(0)
	return c.newObj(9, e.b, dir, name)
}

func (c *Client) newObj(proc uint32, args, dir []byte, name string) ([]byte, error) {
	d, err := c.r.call(progNFS, 3, proc, args)
	if err != nil {
		return nil, err
	}
	if err := d.status(); err != nil {
		return nil, err
	}
	if d.u32() != 0 {
		return append([]byte(nil), d.opaque()...), d.err
	}
	fh, _, err := c.Lookup(dir, name)
	return fh, err
}

// Write sends data UNSTABLE, as the Linux client does, and reports
// whether the server committed it to stable storage anyway (FILE_SYNC):
// then, like Linux, the client sends no COMMIT.
func (c *Client) Write(fh []byte, off uint64, data []byte) (stable bool, err error) {
	var e xdrEnc
	e.opaque(fh)
	e.u64(off)
	e.u32(uint32(len(data)))
	e.u32(0) // UNSTABLE
	e.opaque(data)
	d, err := c.r.call(progNFS, 3, 7, e.b)
	if err != nil {
		return false, err
	}
	if err := d.status(); err != nil {
		return false, err
	}
	d.wcc()
	d.u32() // count
	committed := d.u32()
	return committed == 2, d.err
}

// Commit is COMMIT of the whole file.
func (c *Client) Commit(fh []byte) error {
	var e xdrEnc
	e.opaque(fh)
	e.u64(0)
	e.u32(0)
	d, err := c.r.call(progNFS, 3, 21, e.b)
	if err != nil {
		return err
	}
	return d.status()
}

// MaxRead asks FSINFO for the server's preferred read size, capped at 1 MiB.
func (c *Client) MaxRead() uint32 {
	var e xdrEnc
	e.opaque(c.Root)
	d, err := c.r.call(progNFS, 3, 19, e.b)
	if err != nil || d.status() != nil {
		return 1 << 20
	}
	d.postOpAttr()
	rtmax := d.u32()
	rtpref := d.u32()
	n := min(rtmax, rtpref, 1<<20)
	if n == 0 || d.err != nil {
		return 1 << 20
	}
	return n
}
