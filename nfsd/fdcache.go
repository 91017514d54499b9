package nfsd

import (
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
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
	c    *fdCache // nil: not cached, closed by done
	key  fdKey
	refs int
	last time.Time
	// Where the last stream READ ended and how far the kernel was asked
	// to read ahead (see readAhead).
	end, ahead atomic.Int64
}

// done releases the file taken by open.
func (e *cachedFD) done() {
	if e.c == nil {
		e.f.close()
		return
	}
	e.c.release(e)
}

// readAhead is called after a READ of [off, end) of at least
// readAheadMin bytes. When READs follow each other through the file (in
// any order within the client's window), the kernel is asked to read the
// next readAhead bytes, a half window at a time: its own readahead window
// is 128 KiB by default, too little to keep a cold disk streaming (the
// nfs bench's cold 256 MiB read went from 1.2-1.3 to 1.4-1.5 GB/s).
func (e *cachedFD) readAhead(off, end, size int64) {
	last := e.end.Swap(end)
	if off != 0 && (off < last-readAhead || off > last+readAhead) {
		e.ahead.Store(0) // not a stream (yet): start over from here
		return
	}
	from := max(end, e.ahead.Load())
	if from >= size || from > end+readAhead/2 {
		return
	}
	to := min(end+readAhead, size)
	e.ahead.Store(to)
	_ = unix.Fadvise(int(e.f), from, to-from, unix.FADV_WILLNEED)
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
	// A READ this large may start or continue a stream (readAhead).
	readAheadMin = 256 << 10
	readAhead    = 8 << 20
)

// open returns a read-only file for the object lstat'ed as st at host;
// the caller calls done when it no longer reads it.
func (c *fdCache) open(host string, st *unix.Stat_t) (*cachedFD, error) {
	key := fdKey{uint64(st.Dev), st.Ino, st.Ctim}
	c.mu.Lock()
	if e := c.m[key]; e != nil {
		e.refs++
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	fd, err := hostOpen(host, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: host, Err: err}
	}
	f := hostFile(fd)
	var fst unix.Stat_t
	if unix.Fstat(fd, &fst) != nil || fst.Dev != st.Dev || fst.Ino != st.Ino {
		// Replaced between lstat and open: serve it, do not cache it.
		return &cachedFD{f: f}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[fdKey]*cachedFD)
	}
	if e := c.m[key]; e != nil { // raced with another opener
		e.refs++
		f.close()
		return e, nil
	}
	c.evictLocked()
	e := &cachedFD{f: f, c: c, key: key, refs: 1}
	c.m[key] = e
	return e, nil
}

func (c *fdCache) release(e *cachedFD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	e.last = time.Now()
	if c.m[e.key] != e && e.refs == 0 {
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
	name string
	f    hostFile
	off  int64
	fd   *cachedFD
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
	if r.fd != nil {
		r.fd.done()
		r.fd = nil
	}
	return nil
}
