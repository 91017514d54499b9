package nfsd

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	billy "github.com/go-git/go-billy/v5"
	nfs "github.com/willscott/go-nfs"
	"golang.org/x/sys/unix"
)

// handler is the nfs.Handler (and nfs.CachingHandler) go-nfs calls.
type handler struct{ s *Server }

var (
	_ nfs.Handler        = (*handler)(nil)
	_ nfs.CachingHandler = (*handler)(nil)
)

// Mount is the only call go-nfs shows the client's address: it decides who
// may mount what (calls.go checks the same rule on every later call). A node may mount its own root, and the volumes its Node
// lists; everything else is refused with MNT3ERR_ACCES and logged.
func (h *handler) Mount(ctx context.Context, conn net.Conn, req nfs.MountRequest) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
	s := h.s
	addr := remoteIP(conn)
	dirpath := path.Clean("/" + string(req.Dirpath))
	refuse := func(reason string, args ...any) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
		s.metrics.mounts.WithLabelValues("refused").Inc()
		s.log.Warn("nfs mount refused", append([]any{"addr", addr.String(), "path", dirpath, "reason", reason}, args...)...)
		return nfs.MountStatusErrAcces, nil, nil
	}
	n, known := s.nodes.ByAddr(addr)
	var exportPath string
	switch {
	case strings.HasPrefix(dirpath, "/nodes/"):
		name := strings.TrimPrefix(dirpath, "/nodes/")
		if !known {
			return refuse("address belongs to no node")
		}
		if n.Name != name {
			return refuse("not this node's root", "node", n.Name)
		}
		exportPath = nodeExportPath(name)
	case strings.HasPrefix(dirpath, "/volumes/"):
		name := strings.TrimPrefix(dirpath, "/volumes/")
		if !known {
			return refuse("address belongs to no node")
		}
		if !slices.Contains(n.Volumes, name) {
			return refuse("volume not allowed for node", "node", n.Name)
		}
		exportPath = volumeExportPath(name)
	default:
		return refuse("no such export")
	}
	x, err := s.exportFor(exportPath)
	if err != nil {
		s.metrics.mounts.WithLabelValues("error").Inc()
		s.log.Error("nfs mount failed", "node", n.Name, "addr", addr.String(), "path", dirpath, "err", err)
		return nfs.MountStatusErrAcces, nil, nil
	}
	x.mounts.Add(1)
	x.lastAddr.Store(addr.String())
	x.touch()
	s.metrics.mounts.WithLabelValues("ok").Inc()
	s.log.Info("nfs mount", "node", n.Name, "addr", addr.String(), "path", dirpath)
	return nfs.MountStatusOk, x, []nfs.AuthFlavor{nfs.AuthFlavorUnix}
}

func remoteIP(c net.Conn) netip.Addr {
	if c == nil {
		return netip.Addr{}
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (h *handler) Change(f billy.Filesystem) billy.Change {
	x, r := exportOf(f)
	if x == nil || !x.writable.Load() {
		return nil
	}
	if r != nil {
		return r // turns the request's memo off on every change
	}
	return x
}

func (h *handler) FSStat(ctx context.Context, f billy.Filesystem, st *nfs.FSStat) error {
	x, _ := exportOf(f)
	if x == nil {
		return nil
	}
	t := x.rlock()
	root := t.layers[0].root
	x.mu.RUnlock()
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil {
		return nil // keep go-nfs's defaults
	}
	bs := uint64(sfs.Bsize)
	st.TotalSize = sfs.Blocks * bs
	st.FreeSize = sfs.Bfree * bs
	st.AvailableSize = sfs.Bavail * bs
	st.TotalFiles = sfs.Files
	st.FreeFiles = sfs.Ffree
	st.AvailableFiles = sfs.Ffree
	if !x.writable.Load() {
		st.AvailableSize, st.AvailableFiles = 0, 0
	}
	return nil
}

// ToHandle names the object at p by its identity. go-nfs also asks for the
// handle of names that do not exist yet (MKNOD builds its reply handle
// before creating the node): such a name gets a reserved identity that the
// creation then uses.
func (h *handler) ToHandle(f billy.Filesystem, elems []string) []byte {
	x, r := exportOf(f)
	if x == nil {
		return []byte{}
	}
	p, err := cleanPath(x.Join(elems...))
	if err != nil {
		return []byte{}
	}
	if p != "/" {
		dir, name := splitPath(p)
		if id, ok := x.cache.listedID(dir, name); ok && id.kind() != idKindSeq {
			x.cache.putPath(id, p)
			return h.s.codec.encode(x.number, id)
		}
	}
	t := x.rlock()
	e, err := r.lookup(x, t, p)
	var id fileID
	var rec *recordOp
	switch {
	case err == nil:
		id, err = x.idOf(t, e)
		if err == nil && id.kind() == idKindSeq {
			rec = x.missingRecord(t, id, p)
		}
	case notExist(err) && x.kind == exportNode:
		var ok bool
		if id, ok = x.cache.reservedID(p); !ok {
			n, serr := h.s.store.nextSeq(x.number)
			if serr != nil {
				err = serr
				break
			}
			id = seqID(n)
			x.cache.reserve(p, id)
		}
		err = nil
	}
	x.mu.RUnlock()
	if err != nil {
		h.s.log.Debug("nfs handle for unresolvable path", "export", x.name, "path", p, "err", err)
		return []byte{}
	}
	if rec != nil {
		if err := h.s.store.apply(x.number, *rec); err != nil {
			h.s.log.Warn("nfs could not record file identity", "export", x.name, "path", p, "err", err)
		}
	}
	x.cache.putPath(id, p)
	return h.s.codec.encode(x.number, id)
}

// missingRecord repairs what a crash between creating an object and
// recording it could leave: an identity the records do not know.
func (x *export) missingRecord(t *tree, id fileID, p string) *recordOp {
	if _, ok := x.srv.store.get(x.number, id); ok {
		return nil
	}
	dir, name := splitPath(p)
	pe, err := x.lookup(t, dir)
	if err != nil {
		return nil
	}
	pid, err := x.idOf(t, pe)
	if err != nil {
		return nil
	}
	return &recordOp{id: id, rec: record{parent: pid, name: name}}
}

// FromHandle checks the handle's MAC, finds its export and the object's
// current path. Every failure is NFS3ERR_STALE for the client.
func (h *handler) FromHandle(fh []byte) (billy.Filesystem, []string, error) {
	s := h.s
	num, id, err := s.codec.decode(fh)
	if err != nil {
		s.metrics.staleHandle.WithLabelValues("forged").Inc()
		return nil, nil, err
	}
	x, err := s.exportByNumber(num)
	if err != nil {
		s.metrics.staleHandle.WithLabelValues("export").Inc()
		return nil, nil, errStale
	}
	if err := s.refresh(x); err != nil {
		s.metrics.staleHandle.WithLabelValues("export").Inc()
		return nil, nil, errStale
	}
	x.touch()
	t := x.rlock()
	p, _, err := x.pathOf(t, id)
	x.mu.RUnlock()
	if err != nil {
		s.metrics.staleHandle.WithLabelValues("stale").Inc()
		return nil, nil, errStale
	}
	// A reqFS of its own for this request (reqfs.go); empty on purpose.
	return &reqFS{export: x}, pathElems(p), nil
}

// InvalidateHandle: handles name identities, which a removal or rename
// already took care of.
func (h *handler) InvalidateHandle(billy.Filesystem, []byte) error { return nil }

// HandleLimit: handles are never evicted. (go-nfs also caps READDIR replies
// at half this number.)
func (h *handler) HandleLimit() int { return math.MaxInt32 }

// VerifierFor and DataForVerifier keep a directory listing for the
// multi-call READDIR(PLUS) of one directory: go-nfs would otherwise re-read
// and re-sort the whole directory for every reply page. The verifier is a
// hash of export, path and names, so it is the same after a restart for an
// unchanged directory (no spurious NFS3ERR_BAD_COOKIE) and never matches
// another node's directory of the same path.
func (h *handler) VerifierFor(p string, contents []fs.FileInfo) uint64 {
	sum := sha256.New()
	var export uint32
	if len(contents) > 0 {
		if fi, ok := contents[0].(*fileInfo); ok {
			export = fi.export
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], export)
			sum.Write(b[:])
		}
	}
	sum.Write([]byte(p))
	for _, c := range contents {
		sum.Write([]byte{0})
		sum.Write([]byte(c.Name()))
	}
	v := binary.BigEndian.Uint64(sum.Sum(nil)[:8])
	if v == 0 {
		v = 1
	}
	if export != 0 {
		h.s.lists.put(v, export, p, contents)
	}
	return v
}

func (h *handler) DataForVerifier(p string, verifier uint64) []fs.FileInfo {
	return h.s.lists.get(verifier, p)
}

// listingCache holds the few directory listings being paged through. An
// entry lives briefly (its attributes age) and goes as soon as its export's
// namespace changes.
type listingCache struct {
	mu    sync.Mutex
	order []uint64
	m     map[uint64]listing
}

type listing struct {
	export   uint32
	path     string
	contents []fs.FileInfo
	at       time.Time
}

const (
	maxListings = 64
	listingTTL  = 2 * time.Second
)

func (c *listingCache) put(v uint64, export uint32, p string, contents []fs.FileInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[uint64]listing)
	}
	if _, ok := c.m[v]; !ok {
		c.order = append(c.order, v)
		if len(c.order) > maxListings {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
	}
	c.m[v] = listing{export: export, path: p, contents: contents, at: time.Now()}
}

func (c *listingCache) get(v uint64, p string) []fs.FileInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[v]
	if !ok || l.path != p || time.Since(l.at) > listingTTL {
		return nil
	}
	return l.contents
}

func (c *listingCache) dropExport(export uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for v, l := range c.m {
		if l.export == export {
			delete(c.m, v)
		}
	}
	kept := c.order[:0]
	for _, v := range c.order {
		if _, ok := c.m[v]; ok {
			kept = append(kept, v)
		}
	}
	c.order = kept
}
