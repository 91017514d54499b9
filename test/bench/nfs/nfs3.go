package main

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// NFSv3 procedures the benchmark uses, on rpcConn.

type nfsError uint32

func (e nfsError) Error() string { return fmt.Sprintf("NFS3 status %d", uint32(e)) }

const (
	nfs3ErrStale = 70
	ftypeReg     = 1
	ftypeDir     = 2
)

type fattr struct {
	typ  uint32
	mode uint32
	size uint64
	id   uint64
}

func (d *xdrDec) fattr() fattr {
	var a fattr
	a.typ = d.u32()
	a.mode = d.u32()
	d.u32() // nlink
	d.u32() // uid
	d.u32() // gid
	a.size = d.u64()
	d.u64() // used
	d.u64() // rdev
	d.u64() // fsid
	a.id = d.u64()
	d.take(24) // atime mtime ctime
	return a
}

func (d *xdrDec) postOpAttr() (fattr, bool) {
	if d.u32() == 0 {
		return fattr{}, false
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
		return nfsError(st)
	}
	return nil
}

// client is one mounted export: a MOUNT connection is used once, NFS
// calls go over one connection.
type client struct {
	r    *rpcConn
	root []byte
}

func mountExport(nfsAddr, mountAddr, path string) (*client, error) {
	m, err := dialRPC(mountAddr)
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
	r, err := dialRPC(nfsAddr)
	if err != nil {
		return nil, fmt.Errorf("dial nfs %s: %w", nfsAddr, err)
	}
	return &client{r: r, root: root}, nil
}

func (c *client) close() { c.r.Close() }

func (c *client) lookup(dir []byte, name string) ([]byte, fattr, error) {
	var e xdrEnc
	e.opaque(dir)
	e.str(name)
	d, err := c.r.call(progNFS, 3, 3, e.b)
	if err != nil {
		return nil, fattr{}, err
	}
	if err := d.status(); err != nil {
		return nil, fattr{}, err
	}
	fh := append([]byte(nil), d.opaque()...)
	a, _ := d.postOpAttr()
	return fh, a, d.err
}

type dirEntry struct {
	name string
	fh   []byte
	attr fattr
	has  bool
}

// readdirplus lists a whole directory with the sizes a Linux client asks
// for (dircount 64 KiB, maxcount 256 KiB).
func (c *client) readdirplus(dir []byte) ([]dirEntry, error) {
	var out []dirEntry
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
			out = append(out, dirEntry{name: name, fh: fh, attr: a, has: has})
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

func (c *client) read(fh []byte, off uint64, count uint32) (int, bool, error) {
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

// readFile reads size bytes with up to depth READs in flight.
func (c *client) readFile(fh []byte, size uint64, chunk uint32, depth int) (uint64, error) {
	if size == 0 {
		_, _, err := c.read(fh, 0, chunk)
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
				n, _, err := c.read(fh, off, chunk)
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

func (c *client) create(dir []byte, name string, mode uint32) ([]byte, error) {
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

func (c *client) mkdir(dir []byte, name string, mode uint32) ([]byte, error) {
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

func (c *client) newObj(proc uint32, args, dir []byte, name string) ([]byte, error) {
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
	fh, _, err := c.lookup(dir, name)
	return fh, err
}

// write sends data UNSTABLE, as the Linux client does, and reports
// whether the server committed it to stable storage anyway (FILE_SYNC):
// then, like Linux, the client sends no COMMIT.
func (c *client) write(fh []byte, off uint64, data []byte) (stable bool, err error) {
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

func (c *client) commit(fh []byte) error {
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

// maxRead asks FSINFO for the server's preferred read size, capped at 1 MiB.
func (c *client) maxRead() uint32 {
	var e xdrEnc
	e.opaque(c.root)
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
