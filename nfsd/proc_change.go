package nfsd

import (
	"encoding/binary"
	"io"
	"os"
	"strings"
	"time"

	nfs "github.com/willscott/go-nfs"
	"golang.org/x/sys/unix"
)

// The procedures that change the file system, answered below go-nfs with
// the caller's identity: go-nfs never sees the credentials, masks modes to
// 0777, decodes LINK's arguments in the wrong order, creates nothing for
// character devices and refuses exclusive CREATE (GO_NFS_DEFECTS.md). The
// checks are those of the Linux VFS that knfsd runs under the caller's
// fsuid (perm.go); the changes go through the export's layer code
// (mutate.go), so copy-up, whiteouts and identities behave as before.

// argReader returns the arguments after the first handle.
func (k *nfsReq) argReader() *xdrReader {
	r := &xdrReader{b: k.args}
	r.opaque(nfs.FHSize)
	return r
}

// nameStatus checks a name a client wants to create.
func nameStatus(name string) uint32 {
	switch {
	case name == "" || strings.ContainsAny(name, "/\x00"):
		return nfs3ErrInval
	case len(name) > maxNameLen:
		return nfs3ErrNameTooLong
	case name == "." || name == "..":
		return nfs3ErrExist
	}
	return nfs3OK
}

// secondHandle decodes the other directory handle of RENAME and LINK: it
// must name the same export (else NFS3ERR_XDEV) and be usable.
func (k *nfsReq) secondHandle(fh []byte) (fileID, uint32) {
	x, id, ok := k.s.fastExport(fh)
	switch {
	case !ok:
		return 0, nfs3ErrStale
	case x != k.x:
		return 0, nfs3ErrXDev
	}
	return id, nfs3OK
}

// object resolves the call's (first) handle in t; a handle that no longer
// names anything is answered NFS3ERR_STALE and ok is false.
func (k *nfsReq) object(t *tree) (p string, e *entry, ok bool) {
	p, e, err := k.x.pathOf(t, k.id)
	if err != nil {
		k.fail(nfs3ErrStale)
		return "", nil, false
	}
	return p, e, true
}

// dirState is a directory resolved for a change, with its attributes from
// before it.
type dirState struct {
	path string
	id   fileID
	e    *entry
	pre  unix.Stat_t
}

// resolveDir resolves a directory handle; callers hold x.mu's write lock
// from here to their reply (wcc counts on it).
func (k *nfsReq) resolveDir(t *tree, id fileID) (*dirState, uint32) {
	p, e, err := k.x.pathOf(t, id)
	if err != nil {
		return nil, nfs3ErrStale
	}
	if !e.isDir() {
		return nil, nfs3ErrNotDir
	}
	return &dirState{path: p, id: id, e: e, pre: e.st}, nfs3OK
}

// wcc appends the directory's wcc_data (nil: none).
func (k *nfsReq) wcc(w []byte, t *tree, d *dirState) []byte {
	if d == nil {
		return appendWcc(w, nil, nil)
	}
	x := k.x
	e, err := x.lookup(t, d.path)
	if err != nil {
		return appendWcc(w, &d.pre, nil)
	}
	if e.st.Dev == d.pre.Dev && e.st.Ino == d.pre.Ino {
		// The directory resolveDir checked under this same write lock:
		// its changed ctime needs no identity xattr read.
		x.cache.putID(idKey{e.st.Dev, e.st.Ino, e.st.Ctim}, d.id)
	}
	return appendWcc(w, &d.pre, x.attrOf(t, e))
}

// ---- SETATTR ----

func (k *nfsReq) setattr() bool {
	r := k.argReader()
	a := r.sattr()
	guard := r.u32() != 0
	var guardCtime unix.Timespec
	if guard {
		sec := int64(r.u32())
		guardCtime = unix.NsecToTimespec(sec*1e9 + int64(r.u32()))
	}
	if r.bad {
		return false
	}
	x := k.x
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.t
	p, e, ok := k.object(t)
	if !ok {
		return true
	}
	pre := e.st
	done := func(status uint32) bool {
		w := newReply(k.xid, status)
		w = appendWcc(w, &pre, x.postOpAt(t, p))
		return k.reply(w)
	}
	if guard && (uint32(pre.Ctim.Sec) != uint32(guardCtime.Sec) || uint32(pre.Ctim.Nsec) != uint32(guardCtime.Nsec)) {
		return done(nfs3ErrNotSync)
	}
	if !a.setMode && !a.setUID && !a.setGID && !a.setSize && a.atime == dontChange && a.mtime == dontChange {
		return done(nfs3OK)
	}
	// A read-only export refuses first, as knfsd's nfsd_permission does.
	if !x.writable.Load() {
		return done(nfs3ErrROFS)
	}
	if status := k.checkSattr(e, &a); status != nfs3OK {
		return done(status)
	}
	err := x.setAttrs(t, p, func(host string, st *unix.Stat_t) error { return k.applySattr(host, st, &a) })
	return done(statusOf(err))
}

// checkSattr applies the VFS's rules (setattr_prepare, knfsd's overrides)
// to a SETATTR by the caller of object e, and adjusts a the way the kernel
// does (mode bits the caller may not set are dropped).
func (k *nfsReq) checkSattr(e *entry, a *sattr) uint32 {
	c, st := k.cred, &e.st
	owner := c.root() || c.uid == st.Uid
	if a.setSize {
		switch {
		case e.isDir():
			return nfs3ErrIsDir
		case !e.isRegular():
			return nfs3ErrInval
		case !mayWriteData(c, st):
			return nfs3ErrAcces
		}
	}
	if a.setUID && a.uid != st.Uid && !c.root() {
		return nfs3ErrPerm
	}
	if a.setUID && a.uid == st.Uid && !owner {
		return nfs3ErrPerm
	}
	if a.setGID && !c.root() && (c.uid != st.Uid || (a.gid != st.Gid && !c.inGroup(a.gid))) {
		return nfs3ErrPerm
	}
	if a.setMode {
		if !owner {
			return nfs3ErrPerm
		}
		a.mode &= 0o7777
		gid := st.Gid
		if a.setGID {
			gid = a.gid
		}
		if !c.root() && !c.inGroup(gid) {
			a.mode &^= unix.S_ISGID // the kernel drops it silently
		}
		if e.isSymlink() {
			a.setMode = false // Linux has no symlink modes
		}
	}
	clientTime := a.atime == setToClientTime || a.mtime == setToClientTime
	anyTime := a.atime != dontChange || a.mtime != dontChange
	switch {
	case clientTime && !owner:
		return nfs3ErrPerm
	case anyTime && !owner && !permits(c, st, mayWrite):
		return nfs3ErrAcces
	}
	return nfs3OK
}

// applySattr changes the object at host as checked by checkSattr. Owner
// first (chown clears setuid/setgid itself), then mode, size, times: the
// order knfsd's single notify_change amounts to.
func (k *nfsReq) applySattr(host string, st *unix.Stat_t, a *sattr) error {
	mode := st.Mode
	if a.setUID || a.setGID {
		uid, gid := -1, -1
		if a.setUID {
			uid = int(a.uid)
		}
		if a.setGID {
			gid = int(a.gid)
		}
		if err := hostLchown(host, uid, gid); err != nil {
			return err
		}
		if a.setMode && mode&unix.S_IFMT != unix.S_IFDIR {
			// Setting the mode with the owner: the s-bits still go.
			a.mode &^= unix.S_ISUID
			if a.mode&unix.S_IXGRP != 0 {
				a.mode &^= unix.S_ISGID
			}
		}
	}
	if a.setMode {
		if err := hostChmod(host, a.mode); err != nil {
			return err
		}
		mode = mode&unix.S_IFMT | a.mode
	}
	if a.setSize {
		if err := hostTruncate(host, int64(a.size)); err != nil {
			return err
		}
		if err := k.dropSetID(host, mode); err != nil {
			return err
		}
	}
	if a.atime != dontChange || a.mtime != dontChange {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		for i, how := range []uint32{a.atime, a.mtime} {
			switch how {
			case setToServerTime:
				ts[i] = unix.Timespec{Nsec: unix.UTIME_NOW}
			case setToClientTime:
				ts[i] = []unix.Timespec{a.atimeTS, a.mtimeTS}[i]
			}
		}
		if err := hostUtimes(host, ts); err != nil {
			return err
		}
	}
	return nil
}

// dropSetID clears setuid (and setgid where it means set-group-ID, i.e.
// with group execute) after a non-root caller changed a file's data, as
// the kernel does for callers without CAP_FSETID — nfsd itself has it.
func (k *nfsReq) dropSetID(host string, mode uint32) error {
	if k.cred.root() || mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	kill := mode & unix.S_ISUID
	if mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		kill |= unix.S_ISGID
	}
	if kill == 0 {
		return nil
	}
	return hostChmod(host, mode&0o7777&^kill)
}

// ---- WRITE ----

// stable_how of WRITE (and its reply's committed).
const (
	writeUnstable = 0
	writeFileSync = 2
)

func (k *nfsReq) write() bool {
	r := k.argReader()
	off := r.u64()
	count := r.u32()
	how := r.u32() // stable_how
	data := r.opaque(maxRecord)
	if r.bad {
		return false
	}
	if int(count) < len(data) {
		data = data[:count]
	}
	x := k.x
	t := x.rlock()
	p, e, ok := k.object(t)
	if !ok {
		x.mu.RUnlock()
		return true
	}
	pre := e.st
	// An UNSTABLE write is left in the page cache until the client's
	// COMMIT, as knfsd does: a file written in many WRITEs is synced once,
	// not once per WRITE. A write that holds the whole file (a small file
	// in one WRITE) is synced now and answered FILE_SYNC, which spares the
	// client its COMMIT round trip.
	sync := how != writeUnstable || (off == 0 && int64(len(data)) >= pre.Size)
	status := uint32(nfs3OK)
	switch {
	case !x.writable.Load():
		status = nfs3ErrROFS
	case e.isDir():
		status = nfs3ErrIsDir
	case !e.isRegular():
		status = nfs3ErrInval
	case !mayWriteData(k.cred, &pre):
		status = nfs3ErrAcces
	}
	// A file of the top layer (the own layer, a volume) is opened under
	// the read lock that resolved it: no second lookup. Elsewhere it is
	// copied up first (writeLower).
	fd := -1
	if status == nfs3OK && e.layer == 0 {
		var err error
		if fd, err = hostOpen(e.host, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			status = statusOf(&os.PathError{Op: "open", Path: p, Err: err})
		}
	}
	x.mu.RUnlock()

	var post *nfs.FileAttribute // nil: resolve p again for the reply
	done := func(status uint32, n int) bool {
		w := newReply(k.xid, status)
		if post == nil {
			t := x.rlock()
			post = x.postOpAt(t, p)
			x.mu.RUnlock()
		}
		w = appendWcc(w, &pre, post)
		if status == nfs3OK {
			committed := uint32(writeFileSync)
			if !sync {
				committed = writeUnstable
			}
			w = binary.BigEndian.AppendUint32(w, uint32(n))
			w = binary.BigEndian.AppendUint32(w, committed)
			w = append(w, k.s.writeVerf[:]...)
		}
		return k.reply(w)
	}
	if status != nfs3OK {
		return done(status, 0)
	}
	var n int
	var err error
	if fd >= 0 {
		n, post, err = k.writeOpen(fd, p, data, off, sync)
	} else {
		n, err = k.writeLower(p, data, off, sync)
	}
	if err != nil {
		return done(statusOf(err), 0)
	}
	if pre.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && !k.cred.root() {
		post = nil
		x.mu.Lock()
		err = x.setAttrs(x.t, p, func(host string, st *unix.Stat_t) error { return k.dropSetID(host, st.Mode) })
		x.mu.Unlock()
		if err != nil {
			return done(statusOf(err), 0)
		}
	}
	return done(nfs3OK, n)
}

// writeOpen writes data into fd, the top-layer file the call's handle
// resolved to, and closes it. The attributes after the write are fd's,
// with the handle's identity (fd is that object: it was opened under the
// lock that resolved the handle), so neither the path nor the identity
// xattr is read again.
func (k *nfsReq) writeOpen(fd int, p string, data []byte, off uint64, sync bool) (int, *nfs.FileAttribute, error) {
	defer unix.Close(fd)
	n := 0
	for n < len(data) {
		w, err := unix.Pwrite(fd, data[n:], int64(off)+int64(n))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, nil, &os.PathError{Op: "write", Path: p, Err: err}
		case w == 0:
			return n, nil, &os.PathError{Op: "write", Path: p, Err: io.ErrShortWrite}
		}
		n += w
	}
	if sync && k.s.cfg.syncWrites() {
		if err := unix.Fdatasync(fd); err != nil {
			return n, nil, &os.PathError{Op: "fdatasync", Path: p, Err: err}
		}
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return n, nil, nil
	}
	_, name := splitPath(p)
	return n, fattrOf(newFileInfo(name, &st, k.id, false), p, k.x.fsid()), nil
}

// writeLower writes to a file of a lower layer (image, role layer):
// OpenFile copies it up into the own layer first.
func (k *nfsReq) writeLower(p string, data []byte, off uint64, sync bool) (int, error) {
	f, err := k.x.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	of, ok := f.(*openFile)
	if !ok {
		f.Close()
		return 0, &os.PathError{Op: "write", Path: p, Err: unix.EIO}
	}
	of.dirty = sync // Close fdatasyncs a dirty file
	n, err := of.f.WriteAt(data, int64(off))
	if cerr := of.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// ---- CREATE, MKDIR, SYMLINK, MKNOD ----

// NFSv3 file types (ftype3) MKNOD takes.
const (
	nf3Blk  = 3
	nf3Chr  = 4
	nf3Sock = 6
	nf3Fifo = 7
)

const (
	createUnchecked = 0
	createGuarded   = 1
	createExclusive = 2
)

func (k *nfsReq) create() bool {
	r := k.argReader()
	name := string(r.opaque(4096))
	var o newObject
	var a sattr
	how := uint32(createGuarded)
	var verf []byte
	switch k.proc {
	case procCreate:
		o.typ = unix.S_IFREG
		how = r.u32()
		switch how {
		case createUnchecked, createGuarded:
			a = r.sattr()
		case createExclusive:
			verf = r.fixed(8)
		default:
			r.bad = true
		}
	case procMkdir:
		o.typ = unix.S_IFDIR
		a = r.sattr()
	case procSymlink:
		o.typ = unix.S_IFLNK
		a = r.sattr()
		o.target = string(r.opaque(maxSymlinkTarget + 1))
	case procMknod:
		switch ft := r.u32(); ft {
		case nf3Chr, nf3Blk:
			a = r.sattr()
			major, minor := r.u32(), r.u32()
			o.rdev = unix.Mkdev(major, minor)
			o.typ = unix.S_IFCHR
			if ft == nf3Blk {
				o.typ = unix.S_IFBLK
			}
		case nf3Sock, nf3Fifo:
			a = r.sattr()
			o.typ = unix.S_IFSOCK
			if ft == nf3Fifo {
				o.typ = unix.S_IFIFO
			}
		default:
			if r.bad {
				return false
			}
			return k.fail(nfs3ErrBadType)
		}
	}
	if r.bad {
		return false
	}
	x := k.x
	if status := nameStatus(name); status != nfs3OK {
		return k.fail(status)
	}
	if o.typ == unix.S_IFLNK && (o.target == "" || len(o.target) > maxSymlinkTarget || strings.IndexByte(o.target, 0) >= 0) {
		if len(o.target) > maxSymlinkTarget {
			return k.fail(nfs3ErrNameTooLong)
		}
		return k.fail(nfs3ErrInval)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.t
	d, status := k.resolveDir(t, k.id)
	if status != nfs3OK {
		return k.fail(status)
	}
	fail := func(status uint32) bool { return k.reply(k.wcc(newReply(k.xid, status), t, d)) }
	if !x.writable.Load() {
		return fail(nfs3ErrROFS)
	}
	// The VFS's order: the lookup needs search permission, an existing
	// name is EEXIST before write permission is asked.
	if !permits(k.cred, &d.e.st, mayExec) {
		return fail(nfs3ErrAcces)
	}
	p := joinPath(d.path, name)
	e, err := x.lookup(t, p)
	switch {
	case err == nil:
		switch {
		case k.proc == procCreate && how == createUnchecked && e.isRegular():
			// An existing file is opened, and truncated if asked (knfsd
			// applies only the size).
			if a.setSize {
				sz := sattr{setSize: true, size: a.size}
				if status := k.checkSattr(e, &sz); status != nfs3OK {
					return fail(status)
				}
				if err := x.setAttrs(t, p, func(host string, st *unix.Stat_t) error { return k.applySattr(host, st, &sz) }); err != nil {
					return fail(statusOf(err))
				}
			}
			return k.created(t, d, p, nil)
		case k.proc == procCreate && how == createExclusive && e.isRegular() && verifierMatches(&e.st, verf):
			return k.created(t, d, p, e) // a retransmission
		}
		return fail(nfs3ErrExist)
	case !notExist(err):
		return fail(statusOf(err))
	}
	if !mayChangeEntries(k.cred, &d.e.st) {
		return fail(nfs3ErrAcces)
	}
	if (o.typ == unix.S_IFCHR || o.typ == unix.S_IFBLK) && !k.cred.root() {
		return fail(nfs3ErrPerm) // mknod of a device needs CAP_MKNOD
	}
	o.uid, o.gid = int(k.cred.uid), int(k.cred.gid)
	if a.setMode {
		o.perm = a.mode & 0o7777
	}
	if o.typ == unix.S_IFDIR {
		o.perm &= 0o1777 // mkdir(2): no setuid/setgid but inherited
	} else if o.perm&unix.S_ISGID != 0 && d.e.st.Mode&unix.S_ISGID != 0 && !k.cred.root() && !k.cred.inGroup(d.e.st.Gid) {
		o.perm &^= unix.S_ISGID // the kernel's mode_strip_sgid
	}
	ne, err := x.createIn(t, d.e, p, o)
	if err != nil {
		return fail(statusOf(err))
	}
	// What else the sattr asks (size, times; owner by root), applied as
	// the creator.
	rest := sattr{setSize: a.setSize && o.typ == unix.S_IFREG, size: a.size, atime: a.atime, mtime: a.mtime, atimeTS: a.atimeTS, mtimeTS: a.mtimeTS}
	if k.cred.root() {
		rest.setUID, rest.uid, rest.setGID, rest.gid = a.setUID, a.uid, a.setGID, a.gid
	}
	if verf != nil {
		// knfsd keeps the verifier in the times; a retransmitted
		// CREATE finds it there.
		rest.atime, rest.mtime = setToClientTime, setToClientTime
		rest.mtimeTS = unix.NsecToTimespec(int64(binary.BigEndian.Uint32(verf)&0x7fffffff) * 1e9)
		rest.atimeTS = unix.NsecToTimespec(int64(binary.BigEndian.Uint32(verf[4:])&0x7fffffff) * 1e9)
	}
	if rest.setSize || rest.setUID || rest.setGID || rest.atime != dontChange || rest.mtime != dontChange {
		if err := x.setAttrs(t, p, func(host string, st *unix.Stat_t) error { return k.applySattr(host, st, &rest) }); err != nil {
			return fail(statusOf(err))
		}
		ne = nil // changed since: resolve it again
	}
	return k.created(t, d, p, ne)
}

func verifierMatches(st *unix.Stat_t, verf []byte) bool {
	return st.Size == 0 &&
		int64(st.Mtim.Sec) == int64(binary.BigEndian.Uint32(verf)&0x7fffffff) &&
		int64(st.Atim.Sec) == int64(binary.BigEndian.Uint32(verf[4:])&0x7fffffff)
}

// created answers a CREATE-like call for the object now at p: its handle
// (never empty: a failure to name it is an error reply), attributes and
// the directory's wcc_data. e is the object as resolved after its last
// change, or nil.
func (k *nfsReq) created(t *tree, d *dirState, p string, e *entry) bool {
	x := k.x
	var err error
	if e == nil {
		e, err = x.lookup(t, p)
	}
	var id fileID
	if err == nil {
		id, err = x.idOf(t, e)
	}
	if err != nil {
		return k.reply(k.wcc(newReply(k.xid, statusOf(err)), t, d))
	}
	x.cache.putPath(id, p)
	fh := k.s.codec.encode(x.number, id)
	w := newReply(k.xid, nfs3OK)
	w = binary.BigEndian.AppendUint32(w, 1)
	w = binary.BigEndian.AppendUint32(w, uint32(len(fh)))
	w = append(w, fh...)
	w = appendPostOp(w, x.attrOf(t, e))
	return k.reply(k.wcc(w, t, d))
}

// ---- REMOVE, RMDIR ----

func (k *nfsReq) remove() bool {
	r := k.argReader()
	name := string(r.opaque(4096))
	if r.bad {
		return false
	}
	switch {
	case name == "." && k.proc == procRmdir:
		return k.fail(nfs3ErrInval)
	case name == ".." && k.proc == procRmdir:
		return k.fail(nfs3ErrNotEmpty)
	case name == "." || name == "..":
		return k.fail(nfs3ErrIsDir)
	}
	if status := nameStatus(name); status != nfs3OK && status != nfs3ErrNameTooLong {
		return k.fail(status)
	}
	x := k.x
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.t
	d, status := k.resolveDir(t, k.id)
	if status != nfs3OK {
		return k.fail(status)
	}
	done := func(status uint32) bool { return k.reply(k.wcc(newReply(k.xid, status), t, d)) }
	if len(name) > maxNameLen {
		return done(nfs3ErrNameTooLong)
	}
	if !x.writable.Load() {
		return done(nfs3ErrROFS)
	}
	// The VFS's order (lookup, may_delete): ENOENT, EACCES, EPERM
	// (sticky), then the type.
	if !permits(k.cred, &d.e.st, mayExec) {
		return done(nfs3ErrAcces)
	}
	p := joinPath(d.path, name)
	e, err := x.lookup(t, p)
	switch {
	case err != nil:
		return done(statusOf(err))
	case !mayChangeEntries(k.cred, &d.e.st):
		return done(nfs3ErrAcces)
	case stickyForbids(k.cred, &d.e.st, &e.st):
		return done(nfs3ErrPerm)
	case k.proc == procRemove && e.isDir():
		return done(nfs3ErrIsDir)
	case k.proc == procRmdir && !e.isDir():
		return done(nfs3ErrNotDir)
	}
	return done(statusOf(x.remove(t, p)))
}

// ---- RENAME ----

func (k *nfsReq) rename() bool {
	r := k.argReader()
	from := string(r.opaque(4096))
	toFH := r.opaque(nfs.FHSize)
	to := string(r.opaque(4096))
	if r.bad {
		return false
	}
	x := k.x
	toID, status := k.secondHandle(toFH)
	if status != nfs3OK {
		return k.fail(status)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.t
	fd, status := k.resolveDir(t, k.id)
	if status != nfs3OK {
		return k.fail(status)
	}
	td, status := k.resolveDir(t, toID)
	if status != nfs3OK {
		return k.fail(status)
	}
	done := func(status uint32) bool {
		w := k.wcc(newReply(k.xid, status), t, fd)
		return k.reply(k.wcc(w, t, td))
	}
	for _, n := range []string{from, to} {
		switch {
		case n == "." || n == "..":
			return done(nfs3ErrInval)
		case nameStatus(n) != nfs3OK:
			return done(nameStatus(n))
		}
	}
	if !x.writable.Load() {
		return done(nfs3ErrROFS)
	}
	if !permits(k.cred, &fd.e.st, mayExec) || !permits(k.cred, &td.e.st, mayExec) {
		return done(nfs3ErrAcces)
	}
	op, np := joinPath(fd.path, from), joinPath(td.path, to)
	src, err := x.lookup(t, op)
	if err != nil {
		return done(statusOf(err))
	}
	// The VFS's order (renameat2): ancestry traps, may_delete of the
	// source (permission, sticky), may_delete or may_create at the target
	// (permission, sticky, type), then write permission on a directory
	// that changes parent.
	switch {
	case strings.HasPrefix(np, op+"/"):
		return done(nfs3ErrInval)
	case strings.HasPrefix(op, np+"/"):
		return done(nfs3ErrNotEmpty)
	case !mayChangeEntries(k.cred, &fd.e.st):
		return done(nfs3ErrAcces)
	case stickyForbids(k.cred, &fd.e.st, &src.st):
		return done(nfs3ErrPerm)
	case !mayChangeEntries(k.cred, &td.e.st):
		return done(nfs3ErrAcces)
	}
	if dst, err := x.lookup(t, np); err == nil {
		switch {
		case stickyForbids(k.cred, &td.e.st, &dst.st):
			return done(nfs3ErrPerm)
		case src.isDir() && !dst.isDir():
			return done(nfs3ErrNotDir)
		case !src.isDir() && dst.isDir():
			return done(nfs3ErrIsDir)
		}
	}
	if src.isDir() && fd.path != td.path && !permits(k.cred, &src.st, mayWrite) {
		return done(nfs3ErrAcces)
	}
	return done(statusOf(x.rename(t, op, np)))
}

// ---- LINK ----

func (k *nfsReq) link() bool {
	r := k.argReader()
	dirFH := r.opaque(nfs.FHSize)
	name := string(r.opaque(4096))
	if r.bad {
		return false
	}
	x := k.x
	dirID, status := k.secondHandle(dirFH)
	if status != nfs3OK {
		return k.reply(appendWcc(binary.BigEndian.AppendUint32(newReply(k.xid, status), 0), nil, nil))
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.t
	fp, fe, ok := k.object(t)
	if !ok {
		return true
	}
	d, status := k.resolveDir(t, dirID)
	done := func(status uint32) bool {
		w := appendPostOp(newReply(k.xid, status), x.postOpAt(t, fp))
		return k.reply(k.wcc(w, t, d))
	}
	if status != nfs3OK {
		d = nil
		return done(status)
	}
	if status := nameStatus(name); status != nfs3OK {
		return done(status)
	}
	c, st := k.cred, &fe.st
	np := joinPath(d.path, name)
	_, lerr := x.lookup(t, np)
	// The VFS's order (linkat): the new name's lookup (EEXIST), the
	// protected_hardlinks rule, then may_create and the type.
	switch {
	case !x.writable.Load():
		return done(nfs3ErrROFS)
	case !permits(c, &d.e.st, mayExec):
		return done(nfs3ErrAcces)
	case lerr == nil:
		return done(nfs3ErrExist)
	case !notExist(lerr):
		return done(statusOf(lerr))
	case !c.root() && c.uid != st.Uid && !mayHardlink(c, st):
		return done(nfs3ErrPerm) // fs.protected_hardlinks
	case !mayChangeEntries(c, &d.e.st):
		return done(nfs3ErrAcces)
	case fe.isDir():
		return done(nfs3ErrPerm)
	}
	return done(statusOf(x.link(t, fp, np)))
}

// mayHardlink: the kernel's protected_hardlinks rule for a caller who does
// not own the file: a regular file without set-ID bits it may read and
// write.
func mayHardlink(c cred, st *unix.Stat_t) bool {
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&unix.S_ISUID != 0 ||
		st.Mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		return false
	}
	return permits(c, st, mayRead|mayWrite)
}

// newWriteVerf is the verifier WRITE and COMMIT replies carry: a new one
// per server start, so clients resend unstable data after a restart.
func newWriteVerf() [8]byte {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(time.Now().UnixNano()))
	return v
}
