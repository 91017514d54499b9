package nfsd

import (
	"errors"
	"hash/fnv"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Layer trees use the kernel overlayfs conventions, so an operator can
// inspect a node's root with `mount -t overlay -o lowerdir=own:role:image`:
// a whiteout is a character device 0:0, an opaque directory carries
// trusted.overlay.opaque=y. Identity lives in trusted.pictl.id.
const (
	xattrID     = "trusted.pictl.id"
	xattrOpaque = "trusted.overlay.opaque"
)

type layerKind uint8

const (
	// kindUpper is a node's own layer: writable, whiteouts, opaque dirs,
	// identity in xattrs.
	kindUpper layerKind = iota
	// kindRole is a node's role layer: read-only, may hold whiteouts and
	// opaque dirs, identity by path.
	kindRole
	// kindImage is the bottom of a node's root: read-only, identity by inode.
	kindImage
	// kindPlain is a volume: one tree, identity by inode, no overlay rules.
	kindPlain
)

type layer struct {
	kind  layerKind
	root  string
	index *inoIndex // kindImage, kindPlain
	stamp int64     // kindRole: see roleStamp
}

// overlaid reports whether whiteouts and opaque markers in this layer mean
// something (they never do in the bottom layer: there they are plain files).
func (l *layer) overlaid() bool { return l.kind == kindUpper || l.kind == kindRole }

// tree is the immutable set of layers of an export at one moment; swapping
// a role layer installs a new tree.
type tree struct {
	layers    []*layer // top first
	rootStack []dirRef
	role      *roleIndex
}

func newTree(layers []*layer) *tree {
	t := &tree{layers: layers}
	for i, l := range layers {
		t.rootStack = append(t.rootStack, dirRef{layer: i, host: l.root})
	}
	for _, l := range layers {
		if l.kind == kindRole {
			t.role = &roleIndex{}
			h := fnv.New64a()
			h.Write([]byte(l.root))
			l.stamp = int64(h.Sum64()%uint64(nsPerSec-1)) + 1
		}
	}
	return t
}

const nsPerSec = int64(time.Second)

// roleStamp is what the role layer adds to the nanoseconds of e's mtime
// (0: nothing). A client caches a directory's entries until its mtime
// changes, and a role layer's files all carry one fixed mtime; so every
// object the role layer shows or merges into — /etc, /etc/systemd/system
// even when the node's own layer copied it up — reports an mtime that
// differs from one layer to the next. The stamp comes from the layer's
// directory, which the controller names by content: the same layer gives
// the same times after a restart.
func (t *tree) roleStamp(e *entry) int64 {
	if l := t.layers[e.layer]; l.kind == kindRole {
		return l.stamp
	}
	for _, d := range e.stack {
		if l := t.layers[d.layer]; l.kind == kindRole {
			return l.stamp
		}
	}
	return 0
}

// stamped shifts m's nanoseconds by stamp within its second: distinct
// times of one layer stay distinct, and equal times differ between layers.
func stamped(m time.Time, stamp int64) time.Time {
	if stamp == 0 {
		return m
	}
	return time.Unix(m.Unix(), (int64(m.Nanosecond())+stamp)%nsPerSec)
}

func (t *tree) upper() *layer {
	if t.layers[0].kind == kindUpper || t.layers[0].kind == kindPlain {
		return t.layers[0]
	}
	return nil
}

// dirRef is one layer's directory contributing to a merged directory.
type dirRef struct {
	layer int
	host  string
}

// entry is one resolved name of the merged tree.
type entry struct {
	path  string // merged path, "/" or "/a/b"
	layer int    // layer holding the visible object
	host  string // host path of the visible object
	st    unix.Stat_t
	stack []dirRef // directories: every layer directory merged into this one
	// parent stack and the position of the visible layer in it: identity
	// rules look below the visible layer.
	parent []dirRef
	pos    int
}

func (e *entry) isDir() bool     { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (e *entry) isSymlink() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFLNK }
func (e *entry) isRegular() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFREG }

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func isOpaque(host string) bool {
	var buf [4]byte
	n, err := hostLgetxattr(host, xattrOpaque, buf[:])
	return err == nil && n == 1 && buf[0] == 'y'
}

// lookupChild resolves name in the merged directory whose layers are parent.
// Rules (those of overlayfs): the topmost layer holding the name decides;
// a whiteout hides the name in every layer below; a directory merges with
// directories below it until an opaque one or a non-directory; a
// non-directory hides everything below.
func lookupChild(t *tree, parent []dirRef, name, childPath string) (*entry, error) {
	var e *entry
	for i, d := range parent {
		l := t.layers[d.layer]
		host := d.host + "/" + name
		var st unix.Stat_t
		if err := hostLstat(host, &st); err != nil {
			if err == unix.ENOENT || err == unix.ENOTDIR {
				continue
			}
			return nil, &os.PathError{Op: "lstat", Path: childPath, Err: err}
		}
		if l.overlaid() && isWhiteout(&st) {
			break
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if e == nil {
			e = &entry{path: childPath, layer: d.layer, host: host, st: st, parent: parent, pos: i}
			if !isDir {
				break
			}
		} else if !isDir {
			break
		}
		e.stack = append(e.stack, dirRef{layer: d.layer, host: host})
		if l.overlaid() && isOpaque(host) {
			break
		}
	}
	if e == nil {
		return nil, &os.PathError{Op: "lookup", Path: childPath, Err: os.ErrNotExist}
	}
	return e, nil
}

// rootEntry is the merged root: the top layer's root directory merged with
// every layer below.
func rootEntry(t *tree) (*entry, error) {
	var st unix.Stat_t
	if err := hostLstat(t.layers[0].root, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: "/", Err: err}
	}
	return &entry{path: "/", layer: 0, host: t.layers[0].root, st: st, stack: t.rootStack}, nil
}

// existsBelow reports whether name is visible in the layers of parent below
// the top one, i.e. whether removing the top layer's entry would reveal
// something (and a whiteout is needed).
func existsBelow(t *tree, parent []dirRef, name string) bool {
	for i, d := range parent {
		if d.layer == 0 {
			continue
		}
		_, err := lookupChild(t, parent[i:], name, "")
		return err == nil
	}
	return false
}

// splitPath returns the parent and base of a cleaned merged path.
func splitPath(p string) (string, string) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// cleanPath turns whatever go-nfs hands over into a merged path. go-nfs
// builds paths with our Join, which marks bad names with a NUL byte; those
// never resolve.
func cleanPath(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", os.ErrInvalid
	}
	if p == "" || p == "/" || p == "." {
		return "/", nil
	}
	parts := strings.Split(p, "/")
	out := make([]string, 0, len(parts))
	for _, c := range parts {
		switch c {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "/", nil
	}
	return "/" + strings.Join(out, "/"), nil
}

func pathElems(p string) []string {
	if p == "/" {
		return []string{}
	}
	return strings.Split(p[1:], "/")
}

var errNotDir = errors.New("not a directory")
