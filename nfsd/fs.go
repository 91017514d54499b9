package nfsd

import (
	"errors"
	"os"
	"strings"

	billy "github.com/go-git/go-billy/v5"
	"golang.org/x/sys/unix"
)

// The billy.Filesystem go-nfs serves. Paths are merged paths built with
// Join from the elements FromHandle returned plus client-supplied names.
//
// Deviation from billy's contract, on purpose: Create does not truncate an
// existing file. go-nfs uses Create for NFSv3 CREATE in UNCHECKED mode,
// where an existing file must keep its data unless the client also asked
// for size 0 (which go-nfs then applies as a SETATTR).

var _ billy.Filesystem = (*export)(nil)

const defaultFileMode = 0o644 // go-nfs creates, then chmods only if the client asked for something else

// Join builds a merged path. go-nfs passes a handle's elements followed by
// one name taken from the client; a name containing a slash or NUL, or
// being "." or "..", would walk somewhere the client did not look up, so
// such a path is marked (leading NUL) and every operation refuses it. The
// one full path go-nfs joins on its own is an open file's Name() (CREATE's
// reply), accepted as the first element.
func (x *export) Join(elem ...string) string {
	var b strings.Builder
	bad := false
	for i, el := range elem {
		if i == 0 && strings.HasPrefix(el, "/") {
			b.WriteString(strings.TrimSuffix(el, "/"))
			continue
		}
		if el == "" || el == "." || el == ".." || strings.ContainsAny(el, "/\x00") {
			bad = true
		}
		b.WriteByte('/')
		b.WriteString(el)
	}
	if bad {
		return "\x00" + b.String()
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

func (x *export) Root() string { return "/" }

func (x *export) Chroot(string) (billy.Filesystem, error) { return nil, billy.ErrNotSupported }

func (x *export) TempFile(string, string) (billy.File, error) { return nil, billy.ErrNotSupported }

func (x *export) Capabilities() billy.Capability {
	if x.writable.Load() {
		return billy.DefaultCapabilities
	}
	return billy.ReadCapability | billy.SeekCapability
}

func (x *export) Lstat(name string) (os.FileInfo, error) {
	p, err := cleanPath(name)
	if err != nil {
		return nil, pathErr("lstat", name, err)
	}
	t := x.rlock()
	defer x.mu.RUnlock()
	e, err := x.lookup(t, p)
	if err != nil {
		return nil, err
	}
	return x.info(t, e)
}

// Stat follows symlinks the way the client would, inside the export: an
// absolute target starts at the export's root, never at the host's.
func (x *export) Stat(name string) (os.FileInfo, error) {
	p, err := cleanPath(name)
	if err != nil {
		return nil, pathErr("stat", name, err)
	}
	t := x.rlock()
	defer x.mu.RUnlock()
	e, err := x.follow(t, p)
	if err != nil {
		return nil, err
	}
	return x.info(t, e)
}

const maxSymlinkHops = 40

func (x *export) follow(t *tree, p string) (*entry, error) {
	// Usually no component is a symlink: the cached lookup answers.
	if e, err := x.lookup(t, p); err == nil && !e.isSymlink() {
		return e, nil
	} else if err != nil && notExist(err) && !errors.Is(err, unix.ENOTDIR) {
		return nil, err
	}
	hops := 0
	rest := pathElems(p)
	cur := "/"
	e, err := rootEntry(t)
	if err != nil {
		return nil, err
	}
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if name == ".." {
			cur, _ = splitPath(cur)
			if e, err = x.lookup(t, cur); err != nil {
				return nil, err
			}
			continue
		}
		if !e.isDir() {
			return nil, pathErr("stat", p, unix.ENOTDIR)
		}
		next := joinPath(cur, name)
		ne, err := lookupChild(t, e.stack, name, next)
		if err != nil {
			return nil, err
		}
		if !ne.isSymlink() {
			cur, e = next, ne
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return nil, pathErr("stat", p, unix.ELOOP)
		}
		target, err := hostReadlink(ne.host)
		if err != nil {
			return nil, pathErr("readlink", next, unwrapErrno(err))
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
			if e, err = rootEntry(t); err != nil {
				return nil, err
			}
		}
		var elems []string
		for _, c := range strings.Split(target, "/") {
			if c != "" && c != "." {
				elems = append(elems, c)
			}
		}
		rest = append(elems, rest...)
	}
	return e, nil
}

func (x *export) Readlink(name string) (string, error) {
	p, err := cleanPath(name)
	if err != nil {
		return "", pathErr("readlink", name, err)
	}
	t := x.rlock()
	defer x.mu.RUnlock()
	e, err := x.lookup(t, p)
	if err != nil {
		return "", err
	}
	if !e.isSymlink() {
		return "", pathErr("readlink", p, unix.EINVAL)
	}
	target, err := hostReadlink(e.host) // verbatim, absolute or relative
	if err != nil {
		return "", pathErr("readlink", p, unwrapErrno(err))
	}
	return target, nil
}

func (x *export) ReadDir(name string) ([]os.FileInfo, error) {
	p, err := cleanPath(name)
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	t := x.rlock()
	defer x.mu.RUnlock()
	e, err := x.lookup(t, p)
	if err != nil {
		return nil, err
	}
	if !e.isDir() {
		return nil, pathErr("readdir", p, unix.ENOTDIR)
	}
	gen := x.cache.generation()
	list, err := x.readDir(t, e, 0)
	if err != nil {
		return nil, err
	}
	out := make([]os.FileInfo, 0, len(list))
	ids := make(map[string]fileID, len(list))
	for _, c := range list {
		fi, err := x.info(t, c)
		if err != nil {
			continue // an own-layer object without identity: skip rather than fail the listing
		}
		fi.export = x.number
		ids[fi.name] = fileID(fi.sys.Fileid)
		out = append(out, fi)
	}
	x.cache.putListed(p, gen, ids)
	return out, nil
}

func (x *export) Create(name string) (billy.File, error) {
	return x.OpenFile(name, os.O_RDWR|os.O_CREATE, defaultFileMode)
}

func (x *export) Open(name string) (billy.File, error) {
	return x.OpenFile(name, os.O_RDONLY, 0)
}

func (x *export) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	p, err := cleanPath(name)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	write := flag&(os.O_WRONLY|os.O_RDWR|os.O_TRUNC|os.O_APPEND) != 0
	if !write && flag&os.O_CREATE == 0 {
		t := x.rlock()
		defer x.mu.RUnlock()
		e, err := x.lookup(t, p)
		if err != nil {
			return nil, err
		}
		if !e.isRegular() {
			return x.openHost(e, os.O_RDONLY) // refuses with the right error
		}
		fd, err := x.fdsFor(t, e).open(e.host, &e.st)
		if err != nil {
			return nil, pathErr("open", p, unwrapErrno(err))
		}
		return &readFile{name: e.path, f: fd.f, fd: fd}, nil
	}
	if !x.writable.Load() {
		return nil, pathErr("open", p, unix.EROFS)
	}
	// Fast path: the file already lives in the top layer.
	t := x.rlock()
	e, err := x.lookup(t, p)
	if err == nil && e.layer == 0 {
		if flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
			x.mu.RUnlock()
			return nil, pathErr("open", p, unix.EEXIST)
		}
		f, err := x.openHost(e, flag&^(os.O_CREATE|os.O_EXCL))
		x.mu.RUnlock()
		return f, err
	}
	x.mu.RUnlock()
	if err != nil && !(notExist(err) && flag&os.O_CREATE != 0) {
		return nil, err
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	t = x.t
	e, err = x.lookup(t, p)
	switch {
	case err == nil && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pathErr("open", p, unix.EEXIST)
	case err == nil:
		if e, err = x.copyUp(t, p); err != nil {
			return nil, err
		}
	case notExist(err) && flag&os.O_CREATE != 0:
		uid, gid := x.newOwner()
		if e, err = x.create(t, p, newObject{typ: unix.S_IFREG, perm: uint32(perm.Perm()), uid: uid, gid: gid}); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	return x.openHost(e, flag&^(os.O_CREATE|os.O_EXCL))
}

// newOwner is the owner of objects created through the billy interface.
// Clients' calls that create objects are answered below go-nfs with the
// caller as owner (proc_change.go); this path only serves go-nfs's own
// fallbacks and tests.
func (x *export) newOwner() (int, int) { return 0, 0 }

// openHost opens the visible object. Only regular files are ever opened:
// a READ on a FIFO handle must not block the connection.
func (x *export) openHost(e *entry, flag int) (billy.File, error) {
	if e.isDir() {
		return nil, pathErr("open", e.path, unix.EISDIR)
	}
	if !e.isRegular() {
		return nil, pathErr("open", e.path, unix.EINVAL)
	}
	f, err := hostOpenFile(e.host, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathErr("open", e.path, unwrapErrno(err))
	}
	of := &openFile{name: e.path, f: f, sync: x.srv.cfg.syncWrites()}
	if flag&os.O_TRUNC != 0 {
		of.dirty = true
	}
	return of, nil
}

func (x *export) Rename(oldpath, newpath string) error {
	op, err := cleanPath(oldpath)
	if err != nil {
		return pathErr("rename", oldpath, err)
	}
	np, err := cleanPath(newpath)
	if err != nil {
		return pathErr("rename", newpath, err)
	}
	if !x.writable.Load() {
		return pathErr("rename", op, unix.EROFS)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.rename(x.t, op, np)
}

func (x *export) Remove(name string) error {
	p, err := cleanPath(name)
	if err != nil {
		return pathErr("remove", name, err)
	}
	if !x.writable.Load() {
		return pathErr("remove", p, unix.EROFS)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.remove(x.t, p)
}

// MkdirAll creates the directory (go-nfs's MKDIR calls it for one new
// directory whose parent exists) and any missing parents.
func (x *export) MkdirAll(name string, perm os.FileMode) error {
	p, err := cleanPath(name)
	if err != nil {
		return pathErr("mkdir", name, err)
	}
	if !x.writable.Load() {
		return pathErr("mkdir", p, unix.EROFS)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.t
	var missing []string
	for q := p; q != "/"; q, _ = splitPath(q) {
		e, err := x.lookup(t, q)
		if err == nil {
			if !e.isDir() {
				return pathErr("mkdir", q, unix.EEXIST)
			}
			break
		}
		if !notExist(err) {
			return err
		}
		missing = append(missing, q)
	}
	uid, gid := x.newOwner()
	for i := len(missing) - 1; i >= 0; i-- {
		o := newObject{typ: unix.S_IFDIR, perm: uint32(perm.Perm()), uid: uid, gid: gid}
		if _, err := x.create(t, missing[i], o); err != nil {
			return err
		}
	}
	return nil
}

func (x *export) Symlink(target, link string) error {
	p, err := cleanPath(link)
	if err != nil {
		return pathErr("symlink", link, err)
	}
	if !x.writable.Load() {
		return pathErr("symlink", p, unix.EROFS)
	}
	if target == "" || strings.IndexByte(target, 0) >= 0 || len(target) > 4095 {
		return pathErr("symlink", p, unix.EINVAL)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	uid, gid := x.newOwner()
	_, err = x.create(x.t, p, newObject{typ: unix.S_IFLNK, target: target, uid: uid, gid: gid})
	return err
}
