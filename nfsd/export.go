package nfsd

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

type exportKind uint8

const (
	exportNode exportKind = iota
	exportVolume
)

// export is one mountable file system: a node's composed root or a volume.
// It is the billy.Filesystem go-nfs sees (fs.go) and the billy.Change /
// nfs.UnixChange it uses to change attributes (change.go).
type export struct {
	// name comes first on purpose: go-nfs's RENAME compares the two
	// directories' file systems with reflect.DeepEqual; for two different
	// exports the comparison must stop at the first field instead of walking
	// into locks and maps that other goroutines are writing.
	name     string
	number   uint32
	kind     exportKind
	label    string                 // node or volume name, for logs
	writable atomic.Bool            // volumes may turn read-only at any request
	vol      atomic.Pointer[Volume] // volumes: the settings in force (squash)
	srv      *Server

	// Node exports: <LayerDir>/<node>/{root,work}.
	dir, upperDir, workDir string
	imageRoot, roleLayer   string

	// mu orders namespace changes (write lock) against everything that
	// resolves paths to host paths (read lock), so a path checked to be a
	// real directory stays one while a host path below it is used.
	mu sync.RWMutex
	t  *tree

	cache     exportCache
	fds       fdCache
	recovered atomic.Bool // recoverRecords ran
	tmpSeq    atomic.Uint64
	lastSeen  atomic.Int64 // unix nanoseconds of the last request
	mounts    atomic.Int64
	lastAddr  atomic.Value // string: address of the last MOUNT
}

// changed drops what a namespace or attribute change makes stale outside
// the export's own caches.
func (x *export) changed() { x.srv.lists.dropExport(x.number) }

// syncRoot is a directory on the file system this export writes to.
func (x *export) syncRoot() string {
	if x.kind == exportVolume {
		return x.imageRoot
	}
	return x.srv.cfg.layerDir()
}

func (x *export) touch() { x.lastSeen.Store(time.Now().UnixNano()) }

func (x *export) inUse(window time.Duration) bool {
	last := x.lastSeen.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < window
}

// exportCache memoises path resolution. Entries are only ever trusted
// together with a check against the tree (pathOf verifies identities), or
// are dropped wholesale when the namespace changes (stacks), so the cache
// can be bounded by simply clearing it when full: memory follows the files
// in use, never the size of the image.
type exportCache struct {
	mu     sync.Mutex
	gen    uint64
	stacks map[string][]dirRef
	paths  map[fileID]string
	// reserved identities for names go-nfs asks a handle for before the
	// object exists (MKNOD computes the reply handle first).
	reserved map[string]fileID
	// identities of own-layer objects, saving a getxattr per use. The key
	// includes the inode's ctime, so a reused inode number (a new object)
	// never hits an old entry.
	ids map[idKey]fileID
	// identities of the names of the last directories listed: READDIRPLUS
	// asks a handle for every entry it has just listed.
	listed     map[string]listedDir
	listedKeys []string
}

type listedDir struct {
	gen uint64
	ids map[string]fileID
}

const maxListedDirs = 8

func (c *exportCache) putListed(dir string, gen uint64, ids map[string]fileID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.listed == nil {
		c.listed = make(map[string]listedDir)
	}
	if _, ok := c.listed[dir]; !ok {
		c.listedKeys = append(c.listedKeys, dir)
		if len(c.listedKeys) > maxListedDirs {
			delete(c.listed, c.listedKeys[0])
			c.listedKeys = c.listedKeys[1:]
		}
	}
	c.listed[dir] = listedDir{gen: gen, ids: ids}
}

func (c *exportCache) listedID(dir, name string) (fileID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.listed[dir]
	if !ok || l.gen != c.gen {
		return 0, false
	}
	id, ok := l.ids[name]
	return id, ok
}

type idKey struct {
	dev, ino uint64
	ctime    unix.Timespec
}

const maxCachedIDs = 1 << 16

func (c *exportCache) id(k idKey) (fileID, bool) {
	c.mu.Lock()
	id, ok := c.ids[k]
	c.mu.Unlock()
	return id, ok
}

func (c *exportCache) putID(k idKey, id fileID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil || len(c.ids) >= maxCachedIDs {
		c.ids = make(map[idKey]fileID)
	}
	c.ids[k] = id
}

const (
	maxCachedStacks = 1 << 14
	maxCachedPaths  = 1 << 16
	maxReserved     = 1 << 10
)

func (c *exportCache) stack(p string) ([]dirRef, bool) {
	c.mu.Lock()
	s, ok := c.stacks[p]
	c.mu.Unlock()
	return s, ok
}

func (c *exportCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *exportCache) putStack(gen uint64, p string, s []dirRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.stacks == nil || len(c.stacks) >= maxCachedStacks {
		c.stacks = make(map[string][]dirRef)
	}
	c.stacks[p] = s
}

func (c *exportCache) path(id fileID) (string, bool) {
	c.mu.Lock()
	p, ok := c.paths[id]
	c.mu.Unlock()
	return p, ok
}

func (c *exportCache) putPath(id fileID, p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paths == nil || len(c.paths) >= maxCachedPaths {
		c.paths = make(map[fileID]string)
	}
	c.paths[id] = p
}

// invalidate forgets resolved directories after a namespace change. Paths
// by identity stay: each use re-verifies them.
func (c *exportCache) invalidate() {
	c.mu.Lock()
	c.gen++
	c.stacks = nil
	c.mu.Unlock()
}

func (c *exportCache) reserve(p string, id fileID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reserved == nil || len(c.reserved) >= maxReserved {
		c.reserved = make(map[string]fileID)
	}
	c.reserved[p] = id
}

func (c *exportCache) takeReserved(p string) (fileID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.reserved[p]
	if ok {
		delete(c.reserved, p)
	}
	return id, ok
}

func (c *exportCache) reservedID(p string) (fileID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.reserved[p]
	return id, ok
}

// lookup resolves a merged path. Callers hold x.mu (read or write).
func (x *export) lookup(t *tree, p string) (*entry, error) {
	if p == "/" {
		return rootEntry(t)
	}
	// A directory resolved before: one lstat of its top layer, no opaque
	// checks. (Entries of directories need no parent stack: identity
	// rules only look below non-directories.)
	if s, ok := x.cache.stack(p); ok {
		var st unix.Stat_t
		if hostLstat(s[0].host, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return &entry{path: p, layer: s[0].layer, host: s[0].host, st: st, stack: s}, nil
		}
	}
	dir, name := splitPath(p)
	ps, err := x.stackOf(t, dir)
	if err != nil {
		return nil, err
	}
	return lookupChild(t, ps, name, p)
}

func (x *export) stackOf(t *tree, p string) ([]dirRef, error) {
	if p == "/" {
		return t.rootStack, nil
	}
	if s, ok := x.cache.stack(p); ok {
		return s, nil
	}
	gen := x.cache.generation()
	e, err := x.lookup(t, p)
	if err != nil {
		return nil, err
	}
	if !e.isDir() {
		return nil, &os.PathError{Op: "lookup", Path: p, Err: unix.ENOTDIR}
	}
	x.cache.putStack(gen, p, e.stack)
	return e.stack, nil
}

// info builds the FileInfo go-nfs turns into NFS attributes.
func (x *export) info(t *tree, e *entry) (*fileInfo, error) {
	id, err := x.idOf(t, e)
	if err != nil {
		return nil, &os.PathError{Op: "stat", Path: e.path, Err: err}
	}
	_, name := splitPath(e.path)
	if e.path == "/" {
		name = "/"
	}
	fi := newFileInfo(name, &e.st, id, mergedDir(t, e, id))
	// Linux's NFSv3 client takes its change attribute from ctime, so the
	// role layer's stamp goes on both times (see roleStamp).
	if stamp := t.roleStamp(e); stamp != 0 {
		fi.mtim = stamped(fi.mtim, stamp)
		ct := stamped(time.Unix(fi.ctim.Unix()), stamp)
		fi.ctim = unix.NsecToTimespec(ct.UnixNano())
	}
	return fi, nil
}

// mergedDir reports a directory whose content comes from several layers:
// its host link count means nothing, and 1 tells tools like find not to
// count on it (overlayfs does the same).
func mergedDir(t *tree, e *entry, id fileID) bool {
	if !e.isDir() {
		return false
	}
	if len(e.stack) > 1 {
		return true
	}
	switch t.layers[e.layer].kind {
	case kindUpper:
		return id.kind() != idKindSeq
	case kindRole:
		return id.kind() != idKindRole
	}
	return false
}

// current returns the export's tree under the read lock; the caller must
// RUnlock.
func (x *export) rlock() *tree {
	x.mu.RLock()
	return x.t
}

func (x *export) String() string { return x.name }

// openUpper prepares the own layer of a node export: creates it (with the
// image root's owner, mode and times, so the merged "/" looks like the
// image's), empties the work directory, and checks the host file system
// takes the xattrs and whiteouts the layer needs.
func prepareUpper(dir, imageRoot string) (upper, work string, err error) {
	upper, work = dir+"/root", dir+"/work"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create node layer: %w", err)
	}
	if _, err := os.Lstat(upper); os.IsNotExist(err) {
		tmp := dir + "/root.new"
		_ = os.RemoveAll(tmp)
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return "", "", fmt.Errorf("create node layer: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Stat(imageRoot, &st); err == nil {
			_ = unix.Lchown(tmp, int(st.Uid), int(st.Gid))
			_ = unix.Chmod(tmp, st.Mode&0o7777)
			_ = unix.UtimesNano(tmp, []unix.Timespec{st.Atim, st.Mtim})
		}
		if err := os.Rename(tmp, upper); err != nil {
			return "", "", fmt.Errorf("create node layer: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return "", "", err
		}
	}
	if err := os.RemoveAll(work); err != nil {
		return "", "", fmt.Errorf("clean node work dir: %w", err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return "", "", fmt.Errorf("create node work dir: %w", err)
	}
	probe := work + "/probe"
	if err := unix.Mknod(probe, unix.S_IFCHR, 0); err != nil {
		return "", "", fmt.Errorf("node layer %s cannot hold whiteouts (mknod needs root): %w", dir, err)
	}
	if err := unix.Lsetxattr(probe, xattrID, make([]byte, 8), 0); err != nil {
		return "", "", fmt.Errorf("node layer %s cannot hold trusted xattrs (needs root and xattr support): %w", dir, err)
	}
	_ = os.Remove(probe)
	return upper, work, nil
}
