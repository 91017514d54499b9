package nfsd

import (
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fdCache keeps read-only files open between READs. go-nfs opens and
// closes the file for every READ; a fresh open file has no readahead state,
// so the kernel treats each 1 MiB READ of a sequential stream as a random
// read and a cold file streams at disk latency. Reusing the open file keeps
// the kernel's readahead (knfsd keeps its "raparams" for the same reason).
// Keyed by inode: a path that now names another object gets another entry.
type fdCache struct {
	mu  sync.Mutex
	m   map[fdKey]*cachedFD
	max int // 0: maxCachedFDs
}

// The ctime is part of the key: an inode number freed by a deletion and
// reused by a new file must not find the deleted file's open file.
type fdKey struct {
	dev, ino uint64
	ctime    unix.Timespec
}

type cachedFD struct {
	f    hostFile
	refs int
	last time.Time
}

// hostFile is a read-only descriptor of a host file. A bare descriptor,
// not an *os.File: os.NewFile costs an fcntl and a cleanup registration
// per open, and the tar-like bench opens every file once.
type hostFile int

// ReadAt is os.File.ReadAt: it reads until p is full, and io.EOF says the
// file ended first.
func (f hostFile) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		k, err := unix.Pread(int(f), p[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if k == 0 {
			return n, io.EOF
		}
		n += k
	}
	return n, nil
}

func (f hostFile) close() { _ = unix.Close(int(f)) }

const (
	maxCachedFDs = 32
	fdIdle       = 5 * time.Second
)

// open returns a read-only file for the object lstat'ed as st at host.
func (c *fdCache) open(host string, st *unix.Stat_t) (hostFile, func(), error) {
	key := fdKey{uint64(st.Dev), st.Ino, st.Ctim}
	c.mu.Lock()
	if e := c.m[key]; e != nil {
		e.refs++
		c.mu.Unlock()
		return e.f, func() { c.release(key, e) }, nil
	}
	c.mu.Unlock()
	fd, err := hostOpen(host, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, &os.PathError{Op: "open", Path: host, Err: err}
	}
	f := hostFile(fd)
	var fst unix.Stat_t
	if unix.Fstat(fd, &fst) != nil || fst.Dev != st.Dev || fst.Ino != st.Ino {
		// Replaced between lstat and open: serve it, do not cache it.
		return f, f.close, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[fdKey]*cachedFD)
	}
	if e := c.m[key]; e != nil { // raced with another opener
		e.refs++
		f.close()
		return e.f, func() { c.release(key, e) }, nil
	}
	c.evictLocked()
	e := &cachedFD{f: f, refs: 1}
	c.m[key] = e
	return f, func() { c.release(key, e) }, nil
}

func (c *fdCache) release(key fdKey, e *cachedFD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	e.last = time.Now()
	if c.m[key] != e && e.refs == 0 {
		e.f.close() // evicted while in use
	}
}

// evictLocked makes room for one more file when the cache is full: it
// closes idle files past their time and, if that is not enough, the oldest
// idle eighth, so a full cache scans once per many inserts rather than on
// every one (the periodic sweep closes expired files in between).
func (c *fdCache) evictLocked() {
	limit := c.max
	if limit == 0 {
		limit = maxCachedFDs
	}
	if len(c.m) < limit {
		return
	}
	now := time.Now()
	var idle []fdKey
	for k, e := range c.m {
		if e.refs > 0 {
			continue
		}
		if now.Sub(e.last) > fdIdle {
			e.f.close()
			delete(c.m, k)
			continue
		}
		idle = append(idle, k)
	}
	if len(c.m) < limit {
		return
	}
	slices.SortFunc(idle, func(a, b fdKey) int { return c.m[a].last.Compare(c.m[b].last) })
	for _, k := range idle[:min(len(idle), max(1, limit/8))] {
		c.m[k].f.close()
		delete(c.m, k)
	}
}

// sweep closes files idle for too long (a deleted file's space comes back).
func (c *fdCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, e := range c.m {
		if e.refs == 0 && now.Sub(e.last) > fdIdle {
			e.f.close()
			delete(c.m, k)
		}
	}
}

// closeAll drops every idle entry (shutdown, reset).
func (c *fdCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.refs == 0 {
			e.f.close()
		}
		delete(c.m, k)
	}
}

// readFile is the billy.File for reads through the cache.
type readFile struct {
	name    string
	f       hostFile
	off     int64
	release func()
}

func (r *readFile) Name() string                            { return r.name }
func (r *readFile) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *readFile) Read(p []byte) (int, error) {
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	return n, err
}
func (r *readFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case 0:
		r.off = off
	case 1:
		r.off += off
	case 2:
		var st unix.Stat_t
		if err := unix.Fstat(int(r.f), &st); err != nil {
			return 0, &os.PathError{Op: "fstat", Path: r.name, Err: err}
		}
		r.off = st.Size + off
	}
	return r.off, nil
}
func (r *readFile) Write([]byte) (int, error) { return 0, os.ErrPermission }
func (r *readFile) Truncate(int64) error      { return os.ErrPermission }
func (r *readFile) Lock() error               { return nil }
func (r *readFile) Unlock() error             { return nil }
func (r *readFile) Close() error {
	if r.release != nil {
		r.release()
		r.release = nil
	}
	return nil
}
