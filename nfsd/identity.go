package nfsd

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

var errStale = errors.New("nfsd: stale file handle")

// idOf returns the identity of a resolved entry (see fileID).
func (x *export) idOf(t *tree, e *entry) (fileID, error) {
	if e.path == "/" {
		return rootID, nil
	}
	switch t.layers[e.layer].kind {
	case kindUpper:
		key := idKey{e.st.Dev, e.st.Ino, e.st.Ctim}
		if id, ok := x.cache.id(key); ok {
			return id, nil
		}
		id, err := readIDXattr(e.host)
		if err == errNoID {
			id, err = x.adopt(e)
		}
		if err == nil {
			x.cache.putID(key, id)
		}
		return id, err
	case kindImage:
		return inodeID(e.st.Ino), nil
	case kindPlain:
		key := idKey{e.st.Dev, e.st.Ino, e.st.Ctim}
		if id, ok := x.cache.id(key); ok {
			return id, nil
		}
		id := volumeID(e.host, &e.st)
		x.cache.putID(key, id)
		return id, nil
	case kindRole:
		return roleEntryID(t, e), nil
	}
	return 0, fmt.Errorf("nfsd: unknown layer kind")
}

var errNoID = errors.New("nfsd: own-layer file without identity")

// adopt gives an identity to an own-layer object nfsd did not create (put
// there by hand, or left by a crash). XATTR_CREATE makes concurrent readers
// agree on one identity; ToHandle records where it lives.
func (x *export) adopt(e *entry) (fileID, error) {
	n, err := x.srv.store.nextSeq(x.number)
	if err != nil {
		return 0, err
	}
	id := seqID(n)
	if err := hostLsetxattr(e.host, xattrID, id.bytes(), unix.XATTR_CREATE); err != nil {
		if err == unix.EEXIST {
			return readIDXattr(e.host)
		}
		return 0, errNoID
	}
	return id, nil
}

func readIDXattr(host string) (fileID, error) {
	var buf [8]byte
	n, err := hostLgetxattr(host, xattrID, buf[:])
	if err != nil || n != 8 {
		return 0, errNoID
	}
	id, _ := fileIDFrom(buf[:])
	return id, nil
}

// roleEntryID: a role-layer object that replaces an image object of the
// same type keeps the image's identity, so swapping or re-rendering a role
// layer never changes the handle of a file the image also has.
func roleEntryID(t *tree, e *entry) fileID {
	want := e.st.Mode & unix.S_IFMT
	if e.isDir() {
		last := e.stack[len(e.stack)-1]
		if t.layers[last.layer].kind == kindImage {
			var st unix.Stat_t
			if hostLstat(last.host, &st) == nil {
				return inodeID(st.Ino)
			}
		}
		return roleID(e.path)
	}
	_, name := splitPath(e.path)
	for _, d := range e.parent[e.pos+1:] {
		if t.layers[d.layer].kind != kindImage {
			continue
		}
		var st unix.Stat_t
		if hostLstat(d.host+"/"+name, &st) == nil && st.Mode&unix.S_IFMT == want {
			return inodeID(st.Ino)
		}
	}
	return roleID(e.path)
}

// roleIndex finds role-only files by identity after a restart (their
// identity is a hash of the path). Built lazily, once per role tree.
type roleIndex struct {
	once sync.Once
	m    map[fileID]record
	err  error
}

func (r *roleIndex) lookup(t *tree, id fileID) (record, bool) {
	r.once.Do(func() { r.m, r.err = buildRoleIndex(t) })
	rec, ok := r.m[id]
	return rec, ok
}

func buildRoleIndex(full *tree) (map[fileID]record, error) {
	var at int = -1
	for i, l := range full.layers {
		if l.kind == kindRole {
			at = i
		}
	}
	m := make(map[fileID]record)
	if at < 0 {
		return m, nil
	}
	t := newTree(full.layers[at:])
	var walk func(dir *entry, dirID fileID, depth int)
	walk = func(dir *entry, dirID fileID, depth int) {
		if depth > 64 {
			return
		}
		f, err := hostOpenFile(t.layers[0].root+dir.path, os.O_RDONLY, 0)
		if err != nil {
			return
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		for _, name := range names {
			p := joinPath(dir.path, name)
			e, err := lookupChild(t, dir.stack, name, p)
			if err != nil || e.layer != 0 {
				continue
			}
			id := roleEntryID(t, e)
			if id.kind() == idKindRole {
				m[id] = record{parent: dirID, name: name}
			}
			if e.isDir() {
				walk(e, id, depth+1)
			}
		}
	}
	root, err := rootEntry(t)
	if err != nil {
		return m, err
	}
	walk(root, rootID, 0)
	return m, nil
}

// pathOf resolves an identity to the merged path it lives at now, and checks
// that the object found there really has that identity (a deleted file's
// handle must not name whatever took its place).
func (x *export) pathOf(t *tree, id fileID) (string, *entry, error) {
	p, e, err := x.resolveID(t, id, 0)
	if err != nil && x.recoverRecords(t) {
		return x.resolveID(t, id, 0)
	}
	return p, e, err
}

func (x *export) resolveID(t *tree, id fileID, depth int) (string, *entry, error) {
	if id == rootID {
		e, err := rootEntry(t)
		return "/", e, err
	}
	if depth > 255 {
		return "", nil, errStale
	}
	if p, ok := x.cache.path(id); ok {
		if e := x.verify(t, p, id); e != nil {
			return p, e, nil
		}
	}
	var parent fileID
	var name string
	rec, moved := record{}, false
	if x.kind == exportNode {
		rec, moved = x.srv.store.get(x.number, id)
	}
	if moved {
		parent, name = rec.parent, rec.name
	} else {
		switch id.kind() {
		case idKindInode:
			idx := t.layers[len(t.layers)-1].index
			if idx == nil {
				return "", nil, errStale
			}
			pino, n, rootIno, err := idx.lookup(id.ino())
			if err != nil {
				return "", nil, errStale
			}
			parent, name = inodeID(pino), n
			if pino == rootIno {
				parent = rootID
			} else if t.layers[0].kind == kindPlain {
				// A volume's directories carry tagged identities the
				// index does not know: find the parent by inode number,
				// then check this object's full identity below.
				pp, err := x.indexedPath(t, idx, pino, rootIno, depth+1)
				if err != nil {
					return "", nil, err
				}
				p := joinPath(pp, name)
				e := x.verify(t, p, id)
				if e == nil {
					return "", nil, errStale
				}
				x.cache.putPath(id, p)
				return p, e, nil
			}
		case idKindRole:
			if t.role == nil {
				return "", nil, errStale
			}
			rec, ok := t.role.lookup(t, id)
			if !ok {
				return "", nil, errStale
			}
			parent, name = rec.parent, rec.name
		default:
			return "", nil, errStale
		}
	}
	pp, _, err := x.resolveID(t, parent, depth+1)
	if err != nil {
		return "", nil, err
	}
	p := joinPath(pp, name)
	e := x.verify(t, p, id)
	if e == nil {
		return "", nil, errStale
	}
	x.cache.putPath(id, p)
	return p, e, nil
}

// indexedPath is the path of directory inode ino of a volume, by its index
// (checked to be that inode now).
func (x *export) indexedPath(t *tree, idx *inoIndex, ino, rootIno uint64, depth int) (string, error) {
	if ino == rootIno {
		return "/", nil
	}
	if depth > 255 {
		return "", errStale
	}
	pino, name, _, err := idx.lookup(ino)
	if err != nil {
		return "", errStale
	}
	pp, err := x.indexedPath(t, idx, pino, rootIno, depth+1)
	if err != nil {
		return "", err
	}
	p := joinPath(pp, name)
	e, err := x.lookup(t, p)
	if err != nil || e.st.Ino != ino {
		return "", errStale
	}
	return p, nil
}

// volumeID is the identity of a volume's object: inode number and birth
// time (see taggedInodeID).
func volumeID(host string, st *unix.Stat_t) fileID {
	var sx unix.Statx_t
	if err := hostStatx(host, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME|unix.STATX_INO, &sx); err != nil ||
		sx.Mask&unix.STATX_BTIME == 0 || sx.Ino != st.Ino {
		return inodeID(st.Ino)
	}
	return taggedInodeID(st.Ino, sx.Btime)
}

func (x *export) verify(t *tree, p string, id fileID) *entry {
	e, err := x.lookup(t, p)
	if err != nil {
		return nil
	}
	got, err := x.idOf(t, e)
	if err != nil || got != id {
		return nil
	}
	return e
}

// recoverRecords rebuilds lost identity records (a crash between a change
// and the next record flush) from the own layer, where every object carries
// its identity: each object whose identity does not name its place on its
// own gets a record. Runs at most once per export and process, on the first
// handle that misses. Callers hold x.mu (read).
func (x *export) recoverRecords(t *tree) bool {
	if x.kind != exportNode || t.layers[0].kind != kindUpper || !x.recovered.CompareAndSwap(false, true) {
		return false
	}
	var ops []recordOp
	var walk func(host, dirPath string, dirID fileID, depth int)
	walk = func(host, dirPath string, dirID fileID, depth int) {
		if depth > 4096 {
			return
		}
		f, err := hostOpenFile(host, os.O_RDONLY, 0)
		if err != nil {
			return
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		for _, name := range names {
			child := host + "/" + name
			var st unix.Stat_t
			if hostLstat(child, &st) != nil || isWhiteout(&st) {
				continue
			}
			id, err := readIDXattr(child)
			if err != nil {
				continue
			}
			want := record{parent: dirID, name: name}
			if !x.naturalPlace(t, id, want) {
				if cur, ok := x.srv.store.get(x.number, id); !ok || cur != want {
					ops = append(ops, recordOp{id: id, rec: want})
				}
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				walk(child, joinPath(dirPath, name), id, depth+1)
			}
		}
	}
	walk(t.layers[0].root, "/", rootID, 0)
	if len(ops) == 0 {
		return false
	}
	if err := x.srv.store.apply(x.number, ops...); err != nil {
		x.srv.log.Error("nfs identity record recovery failed", "node", x.label, "err", err)
		return false
	}
	x.srv.log.Warn("nfs recovered lost identity records", "node", x.label, "records", len(ops))
	return true
}

// naturalPlace reports whether id's lower tree already says it lives at
// rec, so no record is needed.
func (x *export) naturalPlace(t *tree, id fileID, rec record) bool {
	switch id.kind() {
	case idKindInode:
		idx := t.layers[len(t.layers)-1].index
		if idx == nil {
			return false
		}
		pino, name, rootIno, err := idx.lookup(id.ino())
		if err != nil {
			return false
		}
		parent := inodeID(pino)
		if pino == rootIno {
			parent = rootID
		}
		return record{parent: parent, name: name} == rec
	case idKindRole:
		if t.role == nil {
			return false
		}
		r, ok := t.role.lookup(t, id)
		return ok && r == rec
	}
	return false
}
