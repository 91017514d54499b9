package nfsd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Namespace changes. All of them run under x.mu's write lock with the tree
// t that lock protects. In a node export every change lands in the own
// layer (copy-up first); objects are built in the work directory with their
// identity xattr already set and then renamed into place, so a crash never
// leaves a half-made object or one without identity in the layer.

// newObject describes a file system object to create.
type newObject struct {
	typ    uint32 // unix.S_IFREG, S_IFDIR, ...
	perm   uint32 // 07777 bits
	rdev   uint64
	target string // symlinks
	uid    int
	gid    int
}

func (o newObject) make(host string) error {
	var err error
	switch o.typ {
	case unix.S_IFDIR:
		err = hostMkdir(host, 0o700)
	case unix.S_IFREG:
		var fd int
		fd, err = hostOpen(host, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err == nil {
			unix.Close(fd)
		}
	case unix.S_IFLNK:
		err = hostSymlink(o.target, host)
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
		err = hostMknod(host, o.typ|0o600, int(o.rdev))
	default:
		err = unix.EINVAL
	}
	if err != nil {
		return err
	}
	// A new object already belongs to the server's uid and gid (or the
	// setgid parent's group).
	if o.uid != os.Geteuid() || o.gid != os.Getegid() {
		if err := hostLchown(host, o.uid, o.gid); err != nil {
			return err
		}
	}
	if o.typ != unix.S_IFLNK {
		// After chown, which clears setuid/setgid; explicit, so the
		// server's umask never applies.
		return hostChmod(host, o.perm&0o7777)
	}
	return nil
}

func (x *export) tempName() string {
	return fmt.Sprintf("%s/#%x", x.workDir, x.tmpSeq.Add(1))
}

// syncMeta makes changes to the given directories (or regular files)
// durable now (Config.SyncMetadata) or at the next background flush.
func (x *export) syncMeta(paths ...string) error {
	if !x.srv.cfg.syncMetadata() {
		x.srv.markDirty(x.syncRoot(), paths...)
		return nil
	}
	for _, p := range paths {
		if err := syncPath(p); err != nil {
			return err
		}
	}
	return nil
}

func notExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT)
}

func pathErr(op, p string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

// copyUp makes the object at p live in the own layer (parents first) and
// returns it resolved again. Content, owner, mode (with setuid bits),
// xattrs and times are copied; identity is kept.
func (x *export) copyUp(t *tree, p string) (*entry, error) {
	e, err := x.lookup(t, p)
	if err != nil {
		return nil, err
	}
	if e.layer == 0 {
		return e, nil
	}
	if t.layers[0].kind != kindUpper {
		return nil, pathErr("copy-up", p, unix.EROFS)
	}
	dir, name := splitPath(p)
	pe, err := x.copyUp(t, dir)
	if err != nil {
		return nil, err
	}
	id, err := x.idOf(t, e)
	if err != nil {
		return nil, pathErr("copy-up", p, err)
	}
	var ops []recordOp
	if !e.isDir() && e.st.Nlink > 1 {
		// A hard-linked lower file splits into two files on copy-up; they
		// must not share an identity (clients would think them one inode).
		n, err := x.srv.store.nextSeq(x.number)
		if err != nil {
			return nil, err
		}
		pid, err := x.idOf(t, pe)
		if err != nil {
			return nil, pathErr("copy-up", p, err)
		}
		id = seqID(n)
		ops = append(ops, recordOp{id: id, rec: record{parent: pid, name: name}})
	}
	tmp := x.tempName()
	if err := copyObject(e, tmp, id); err != nil {
		_ = hostRemoveAll(tmp)
		return nil, pathErr("copy-up", p, err)
	}
	if err := hostRenameat2(tmp, pe.host+"/"+name, unix.RENAME_NOREPLACE); err != nil {
		_ = hostRemoveAll(tmp)
		return nil, pathErr("copy-up", p, err)
	}
	if err := x.srv.store.apply(x.number, ops...); err != nil {
		return nil, err
	}
	if err := x.syncMeta(pe.host); err != nil {
		return nil, err
	}
	x.cache.invalidate()
	x.changed()
	x.srv.metrics.copyUps.Inc()
	return x.lookup(t, p)
}

func copyObject(e *entry, tmp string, id fileID) error {
	st := &e.st
	typ := st.Mode & unix.S_IFMT
	switch typ {
	case unix.S_IFREG:
		if err := copyData(e.host, tmp); err != nil {
			return err
		}
	case unix.S_IFDIR:
		if err := hostMkdir(tmp, 0o700); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := hostReadlink(e.host)
		if err != nil {
			return err
		}
		if err := hostSymlink(target, tmp); err != nil {
			return err
		}
	default:
		if err := hostMknod(tmp, typ|0o600, int(st.Rdev)); err != nil {
			return err
		}
	}
	if err := hostLchown(tmp, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if typ != unix.S_IFLNK {
		if err := hostChmod(tmp, st.Mode&0o7777); err != nil {
			return err
		}
	}
	copyXattrs(e.host, tmp) // after chown: it clears security.capability
	if err := hostLsetxattr(tmp, xattrID, id.bytes(), 0); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := hostUtimes(tmp, ts); err != nil {
		return err
	}
	return nil
}

// copyData copies a regular file and makes the copy durable before it can
// be renamed over the lower file: otherwise a crash could leave the node
// with an empty file where the image had content.
func copyData(src, dst string) error {
	in, err := hostOpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := hostOpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil { // copy_file_range: reflinks where the host fs can
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyXattrs copies extended attributes except nfsd's and overlayfs's own.
// Failures are ignored: NFSv3 clients cannot see xattrs, and a layer on a
// file system without some namespace must still work.
func copyXattrs(src, dst string) {
	size, err := hostLlistxattr(src, nil)
	if err != nil || size <= 0 {
		return
	}
	buf := make([]byte, size)
	size, err = hostLlistxattr(src, buf)
	if err != nil {
		return
	}
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.pictl.") || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		n, err := hostLgetxattr(src, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, n)
		n, err = hostLgetxattr(src, name, val)
		if err != nil {
			continue
		}
		_ = hostLsetxattr(dst, name, val[:n], 0)
	}
}

// create makes a new object at p.
func (x *export) create(t *tree, p string, o newObject) (*entry, error) {
	if p == "/" {
		return nil, pathErr("create", p, unix.EEXIST)
	}
	if _, err := x.lookup(t, p); err == nil {
		return nil, pathErr("create", p, unix.EEXIST)
	} else if !notExist(err) {
		return nil, err
	}
	return x.createIn(t, nil, p, o)
}

// createIn makes a new object at p, which the caller found free under the
// same write lock. parent, if not nil, is p's directory as the caller
// resolved it under that lock (saves resolving it again).
func (x *export) createIn(t *tree, parent *entry, p string, o newObject) (*entry, error) {
	dir, name := splitPath(p)
	if len(name) > 255 {
		return nil, pathErr("create", p, unix.ENAMETOOLONG)
	}
	pe := parent
	if pe == nil || pe.layer != 0 || pe.path != dir {
		var err error
		if pe, err = x.copyUp(t, dir); err != nil {
			return nil, err
		}
	}
	if !pe.isDir() {
		return nil, pathErr("create", p, unix.ENOTDIR)
	}
	// A setgid directory hands its group (and, to directories, the bit)
	// down, as Linux does locally.
	if pe.st.Mode&unix.S_ISGID != 0 {
		o.gid = int(pe.st.Gid)
		if o.typ == unix.S_IFDIR {
			o.perm |= unix.S_ISGID
		}
	}
	target := pe.host + "/" + name
	if t.layers[0].kind == kindPlain {
		if err := o.make(target); err != nil {
			_ = hostRemove(target)
			return nil, pathErr("create", p, err)
		}
		if err := x.syncMeta(pe.host); err != nil {
			return nil, err
		}
		e, err := x.lookup(t, p)
		if err == nil {
			t.layers[0].index.put(e.st.Ino, pe.st.Ino, name)
		}
		x.changed()
		return e, err
	}

	id, ok := x.cache.takeReserved(p)
	if !ok {
		n, err := x.srv.store.nextSeq(x.number)
		if err != nil {
			return nil, err
		}
		id = seqID(n)
	}
	var tst unix.Stat_t
	whiteout := hostLstat(target, &tst) == nil && isWhiteout(&tst)
	opaque := o.typ == unix.S_IFDIR && (whiteout || existsBelow(t, pe.stack, name))

	if whiteout || opaque {
		if err := x.createReplacing(o, target, id, whiteout, opaque); err != nil {
			return nil, pathErr("create", p, err)
		}
	} else {
		// Nothing to replace: make it in place (cheaper than the work
		// dir and a rename). A crash before the identity xattr is set
		// leaves an object without one, which adopt() gives a fresh
		// identity; no client ever had a handle for it.
		if err := o.make(target); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				_ = hostRemove(target)
			}
			return nil, pathErr("create", p, err)
		}
		if err := hostLsetxattr(target, xattrID, id.bytes(), 0); err != nil {
			_ = hostRemove(target)
			return nil, pathErr("create", p, err)
		}
	}
	pid, err := x.idOf(t, pe)
	if err != nil {
		return nil, pathErr("create", p, err)
	}
	if err := x.srv.store.apply(x.number, recordOp{id: id, rec: record{parent: pid, name: name}}); err != nil {
		return nil, err
	}
	if err := x.syncMeta(pe.host); err != nil {
		return nil, err
	}
	x.cache.putPath(id, p)
	x.changed()
	e, err := x.lookup(t, p)
	if err == nil {
		// Under the write lock this is the object just made: its
		// identity is known without reading the xattr back.
		x.cache.putID(idKey{e.st.Dev, e.st.Ino, e.st.Ctim}, id)
	}
	return e, err
}

// createReplacing builds the object in the work dir with its identity and
// opaque marker, then puts it over the whiteout (or into the empty name)
// in one rename, so a crash never shows a directory whose lower content
// leaks through.
func (x *export) createReplacing(o newObject, target string, id fileID, whiteout, opaque bool) error {
	tmp := x.tempName()
	if err := o.make(tmp); err != nil {
		_ = hostRemoveAll(tmp)
		return err
	}
	fail := func(err error) error {
		_ = hostRemoveAll(tmp)
		return err
	}
	if err := hostLsetxattr(tmp, xattrID, id.bytes(), 0); err != nil {
		return fail(err)
	}
	if opaque {
		if err := hostLsetxattr(tmp, xattrOpaque, []byte("y"), 0); err != nil {
			return fail(err)
		}
	}
	switch {
	case whiteout && o.typ == unix.S_IFDIR:
		// rename(2) cannot put a directory over a file: swap, then drop
		// the whiteout that landed in the work dir.
		if err := hostRenameat2(tmp, target, unix.RENAME_EXCHANGE); err != nil {
			return fail(err)
		}
		_ = hostUnlink(tmp)
	case whiteout:
		if err := hostRename(tmp, target); err != nil {
			return fail(err)
		}
	default:
		if err := hostRenameat2(tmp, target, unix.RENAME_NOREPLACE); err != nil {
			return fail(err)
		}
	}
	return nil
}

// link makes newPath another name of the non-directory at oldPath (both
// land in the own layer; the new name shares the inode and so the identity).
func (x *export) link(t *tree, oldPath, newPath string) error {
	src, err := x.lookup(t, oldPath)
	if err != nil {
		return err
	}
	if src.isDir() {
		return pathErr("link", oldPath, unix.EPERM)
	}
	if _, err := x.lookup(t, newPath); err == nil {
		return pathErr("link", newPath, unix.EEXIST)
	} else if !notExist(err) {
		return err
	}
	if src, err = x.copyUp(t, oldPath); err != nil {
		return err
	}
	dir, name := splitPath(newPath)
	pe, err := x.copyUp(t, dir)
	if err != nil {
		return err
	}
	target := pe.host + "/" + name
	var tst unix.Stat_t
	if hostLstat(target, &tst) == nil && isWhiteout(&tst) {
		tmp := x.tempName()
		if err := hostLink(src.host, tmp); err != nil {
			return pathErr("link", newPath, err)
		}
		if err := hostRename(tmp, target); err != nil {
			_ = hostUnlink(tmp)
			return pathErr("link", newPath, err)
		}
	} else if err := hostLink(src.host, target); err != nil {
		return pathErr("link", newPath, err)
	}
	if t.layers[0].kind == kindPlain {
		t.layers[0].index.put(src.st.Ino, pe.st.Ino, name)
	}
	x.changed()
	return x.syncMeta(pe.host)
}

// remove deletes the object at p (a directory must be empty in the merged
// view), leaving a whiteout where a lower layer still has the name.
func (x *export) remove(t *tree, p string) error {
	if p == "/" {
		return pathErr("remove", p, unix.EBUSY)
	}
	e, err := x.lookup(t, p)
	if err != nil {
		return err
	}
	if e.isDir() {
		empty, err := x.mergedEmpty(t, e)
		if err != nil {
			return err
		}
		if !empty {
			return pathErr("remove", p, unix.ENOTEMPTY)
		}
	}
	dir, name := splitPath(p)
	if t.layers[0].kind == kindPlain {
		if e.isDir() {
			err = hostRmdir(e.host)
		} else {
			err = hostUnlink(e.host)
		}
		if err != nil {
			return pathErr("remove", p, err)
		}
		if e.st.Nlink <= 1 || e.isDir() {
			t.layers[0].index.remove(e.st.Ino)
		}
		x.cache.invalidate()
		x.changed()
		return x.syncMeta(e.host[:strings.LastIndexByte(e.host, '/')])
	}
	if t.layers[0].kind != kindUpper {
		return pathErr("remove", p, unix.EROFS)
	}
	id, idErr := x.idOf(t, e)
	pstack, err := x.stackOf(t, dir)
	if err != nil {
		return err
	}
	var parentHost string
	if e.layer == 0 {
		parentHost = e.host[:strings.LastIndexByte(e.host, '/')]
		if existsBelow(t, pstack, name) {
			tmp := x.tempName()
			if err := hostMknod(tmp, unix.S_IFCHR, 0); err != nil {
				return pathErr("remove", p, err)
			}
			if e.isDir() {
				if err := hostRenameat2(tmp, e.host, unix.RENAME_EXCHANGE); err != nil {
					_ = hostUnlink(tmp)
					return pathErr("remove", p, err)
				}
				_ = hostRemoveAll(tmp) // only whiteouts were left in it
			} else if err := hostRename(tmp, e.host); err != nil {
				_ = hostUnlink(tmp)
				return pathErr("remove", p, err)
			}
		} else if e.isDir() {
			if err := hostRemoveAll(e.host); err != nil {
				return pathErr("remove", p, err)
			}
		} else if err := hostUnlink(e.host); err != nil {
			return pathErr("remove", p, err)
		}
	} else {
		pe, err := x.copyUp(t, dir)
		if err != nil {
			return err
		}
		parentHost = pe.host
		if err := hostMknod(pe.host+"/"+name, unix.S_IFCHR, 0); err != nil {
			return pathErr("remove", p, err)
		}
	}
	if idErr == nil && (e.isDir() || e.st.Nlink <= 1) {
		if err := x.srv.store.apply(x.number, recordOp{id: id, delete: true}); err != nil {
			return err
		}
	}
	x.cache.invalidate()
	x.changed()
	return x.syncMeta(parentHost)
}

// rename moves oldPath to newPath with rename(2) semantics. Objects from
// lower layers are copied up first (a directory with its whole subtree,
// marked opaque at its new place); a whiteout stays behind where a lower
// layer still has the old name. The moved object keeps its identity: one
// record says where it went.
func (x *export) rename(t *tree, oldPath, newPath string) error {
	if oldPath == newPath {
		return nil
	}
	if oldPath == "/" || newPath == "/" {
		return pathErr("rename", oldPath, unix.EBUSY)
	}
	if strings.HasPrefix(newPath, oldPath+"/") {
		return pathErr("rename", newPath, unix.EINVAL)
	}
	eo, err := x.lookup(t, oldPath)
	if err != nil {
		return err
	}
	ndir, nname := splitPath(newPath)
	if len(nname) > 255 {
		return pathErr("rename", newPath, unix.ENAMETOOLONG)
	}
	pn, err := x.lookup(t, ndir)
	if err != nil {
		return err
	}
	if !pn.isDir() {
		return pathErr("rename", newPath, unix.ENOTDIR)
	}
	en, err := x.lookup(t, newPath)
	exists := err == nil
	if err != nil && !notExist(err) {
		return err
	}
	if exists {
		switch {
		case eo.isDir() && !en.isDir():
			return pathErr("rename", newPath, unix.ENOTDIR)
		case !eo.isDir() && en.isDir():
			return pathErr("rename", newPath, unix.EISDIR)
		case en.isDir():
			empty, err := x.mergedEmpty(t, en)
			if err != nil {
				return err
			}
			if !empty {
				return pathErr("rename", newPath, unix.ENOTEMPTY)
			}
		case en.st.Dev == eo.st.Dev && en.st.Ino == eo.st.Ino:
			return nil // two names of one file: rename(2) does nothing
		}
	}
	idOld, err := x.idOf(t, eo)
	if err != nil {
		return pathErr("rename", oldPath, err)
	}
	var idNew fileID
	if exists {
		idNew, _ = x.idOf(t, en)
	}

	if t.layers[0].kind == kindPlain {
		if err := hostRename(eo.host, pn.host+"/"+nname); err != nil {
			return pathErr("rename", oldPath, err)
		}
		t.layers[0].index.put(eo.st.Ino, pn.st.Ino, nname)
		if exists && en.st.Nlink <= 1 {
			t.layers[0].index.remove(en.st.Ino)
		}
		x.cache.invalidate()
		x.changed()
		return x.syncMeta(eo.host[:strings.LastIndexByte(eo.host, '/')], pn.host)
	}
	if t.layers[0].kind != kindUpper {
		return pathErr("rename", oldPath, unix.EROFS)
	}

	odir, oname := splitPath(oldPath)
	ostack, err := x.stackOf(t, odir)
	if err != nil {
		return err
	}
	oldBelow := eo.layer > 0 || existsBelow(t, ostack, oname)

	if eo.isDir() {
		if eo.layer > 0 || len(eo.stack) > 1 {
			if err := x.copyUpTree(t, oldPath, 0); err != nil {
				return err
			}
		}
		if eo, err = x.lookup(t, oldPath); err != nil {
			return err
		}
		// At its new place nothing below may show through it.
		if err := hostLsetxattr(eo.host, xattrOpaque, []byte("y"), 0); err != nil {
			return pathErr("rename", oldPath, err)
		}
	} else if eo, err = x.copyUp(t, oldPath); err != nil {
		return err
	}
	if pn, err = x.copyUp(t, ndir); err != nil {
		return err
	}
	target := pn.host + "/" + nname
	var tst unix.Stat_t
	if hostLstat(target, &tst) == nil {
		switch {
		case isWhiteout(&tst) && eo.isDir():
			if err := hostUnlink(target); err != nil {
				return pathErr("rename", newPath, err)
			}
		case tst.Mode&unix.S_IFMT == unix.S_IFDIR:
			// Empty in the merged view: only whiteouts are left in it.
			if err := removeContents(target); err != nil {
				return pathErr("rename", newPath, err)
			}
		}
	}
	oldParentHost := eo.host[:strings.LastIndexByte(eo.host, '/')]
	if oldBelow {
		err = hostRenameat2(eo.host, target, unix.RENAME_WHITEOUT)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
			// Host file system without RENAME_WHITEOUT.
			if err = hostRename(eo.host, target); err == nil {
				err = hostMknod(eo.host, unix.S_IFCHR, 0)
			}
		}
	} else {
		err = hostRename(eo.host, target)
	}
	if err != nil {
		return pathErr("rename", oldPath, err)
	}
	pid, err := x.idOf(t, pn)
	if err != nil {
		return pathErr("rename", newPath, err)
	}
	ops := []recordOp{{id: idOld, rec: record{parent: pid, name: nname}}}
	if exists && idNew != idOld && (en.isDir() || en.st.Nlink <= 1) {
		ops = append(ops, recordOp{id: idNew, delete: true})
	}
	if err := x.srv.store.apply(x.number, ops...); err != nil {
		return err
	}
	x.cache.invalidate()
	x.changed()
	x.cache.putPath(idOld, newPath)
	return x.syncMeta(oldParentHost, pn.host)
}

// copyUpTree copies a directory and everything visible below it into the
// own layer, so the directory can move without its lower parts.
func (x *export) copyUpTree(t *tree, p string, depth int) error {
	if depth > 4096 {
		return pathErr("copy-up", p, unix.ELOOP)
	}
	e, err := x.copyUp(t, p)
	if err != nil {
		return err
	}
	children, err := x.readDir(t, e, 0)
	if err != nil {
		return err
	}
	for _, c := range children {
		if c.isDir() {
			if err := x.copyUpTree(t, c.path, depth+1); err != nil {
				return err
			}
		} else if c.layer != 0 {
			if _, err := x.copyUp(t, c.path); err != nil {
				return err
			}
		}
	}
	return nil
}

func removeContents(dir string) error {
	f, err := hostOpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := hostRemoveAll(dir + "/" + n); err != nil {
			return err
		}
	}
	return nil
}

// setAttrs changes owner, mode or times of the object at p (copied up
// first).
func (x *export) setAttrs(t *tree, p string, apply func(host string, st *unix.Stat_t) error) error {
	e, err := x.copyUp(t, p)
	if err != nil {
		return err
	}
	if err := apply(e.host, &e.st); err != nil {
		return pathErr("setattr", p, err)
	}
	x.changed()
	if e.isDir() || e.isRegular() {
		return x.syncMeta(e.host)
	}
	// Devices, FIFOs and symlinks cannot be opened to fsync: their
	// directory's fsync commits the journal that holds the change on
	// ext4 and xfs.
	return x.syncMeta(e.host[:strings.LastIndexByte(e.host, '/')])
}
