package nfsd

import (
	"encoding/binary"
	"errors"
	"net"
	"os"

	nfs "github.com/willscott/go-nfs"
	"golang.org/x/sys/unix"
)

// Every NFSv3 call passes through serveCall below go-nfs (the fan-out hands
// it the record and the client's address). It decodes the credential,
// checks the client may use the export the handle belongs to, maps the
// caller's identity (squash), and then either answers the call itself —
// every procedure whose semantics go-nfs gets wrong: permissions,
// ownership, special bits, times, LINK, MKNOD, exclusive CREATE — or hands
// it to go-nfs (NULL, MOUNT, malformed arguments, handles it cannot
// resolve).

// NFSv3 procedures (RFC 1813).
const (
	procSetattr     = 2
	procReadlink    = 5
	procWrite       = 7
	procCreate      = 8
	procMkdir       = 9
	procSymlink     = 10
	procMknod       = 11
	procRemove      = 12
	procRmdir       = 13
	procRename      = 14
	procLink        = 15
	procReaddir     = 16
	procReaddirplus = 17
	procCommit      = 21
)

// nfsstat3 values.
const (
	nfs3OK             = 0
	nfs3ErrPerm        = 1
	nfs3ErrIO          = 5
	nfs3ErrNXIO        = 6
	nfs3ErrAcces       = 13
	nfs3ErrExist       = 17
	nfs3ErrXDev        = 18
	nfs3ErrNoDev       = 19
	nfs3ErrNotDir      = 20
	nfs3ErrIsDir       = 21
	nfs3ErrInval       = 22
	nfs3ErrFBig        = 27
	nfs3ErrNoSpc       = 28
	nfs3ErrROFS        = 30
	nfs3ErrMLink       = 31
	nfs3ErrNameTooLong = 63
	nfs3ErrNotEmpty    = 66
	nfs3ErrDQuot       = 69
	nfs3ErrStale       = 70
	nfs3ErrNotSync     = 10002
	nfs3ErrNotSupp     = 10004
	nfs3ErrServerFault = 10006
	nfs3ErrBadType     = 10007
	nfs3ErrJukebox     = 10008
)

// nfsCall is a decoded NFSv3 call header.
type nfsCall struct {
	xid, proc uint32
	rc        rpcCred
	credOK    bool
	args      []byte
}

// parseNFSCall decodes the RPC header of an NFSv3 call record (record mark
// included) with its credential.
func parseNFSCall(rec []byte) (nfsCall, bool) {
	var c nfsCall
	xid, proc, args, ok := parseCall(rec)
	if !ok {
		return c, false
	}
	c.xid, c.proc, c.args = xid, proc, args
	b := rec[4+24:]
	c.rc.flavor = binary.BigEndian.Uint32(b)
	n := binary.BigEndian.Uint32(b[4:])
	switch c.rc.flavor {
	case authUnix:
		c.rc.cred, c.credOK = parseAuthUnix(b[8 : 8+n])
	case authNone:
		c.credOK = true
	}
	return c, true
}

// nfsReq is one call nfsd answers: the export and identity its handle names,
// and who asks.
type nfsReq struct {
	nfsCall
	s    *Server
	x    *export
	id   fileID
	cred cred
	send func([]byte) error
}

// serveCall answers rec or returns false for go-nfs to answer it.
func (s *Server) serveCall(from net.Addr, rec []byte, send func([]byte) error) bool {
	c, ok := parseNFSCall(rec)
	if !ok || c.proc == 0 || c.proc > procCommit {
		return false
	}
	if c.rc.flavor != authNone && c.rc.flavor != authUnix {
		s.metrics.refusedCalls.WithLabelValues("credential").Inc()
		_ = send(authErrorReply(c.xid, authTooWeak))
		return true
	}
	if !c.credOK {
		s.metrics.refusedCalls.WithLabelValues("credential").Inc()
		_ = send(authErrorReply(c.xid, authBadCred))
		return true
	}
	r := xdrReader{b: c.args}
	fh := r.opaque(nfs.FHSize)
	if r.bad {
		return false // admitGoNFS answers GARBAGE_ARGS
	}
	x, id, ok := s.fastExport(fh)
	if !ok {
		// NFS3ERR_STALE, as go-nfs would answer after decoding the
		// arguments itself: go-nfs sees as few calls as can be.
		reason := "export"
		if _, _, err := s.codec.decode(fh); err != nil {
			reason = "forged"
		}
		s.metrics.staleHandle.WithLabelValues(reason).Inc()
		_ = send(errorReply(c.xid, c.proc, nfs3ErrStale))
		return true
	}
	if !s.mayUse(addrOf(from), x) {
		// knfsd finds no export for this client: the handle is stale for it.
		s.metrics.refusedCalls.WithLabelValues("address").Inc()
		s.log.Debug("nfs call refused: export not allowed for address", "addr", addrOf(from).String(), "export", x.name)
		_ = send(errorReply(c.xid, c.proc, nfs3ErrStale))
		return true
	}
	cr, ok := s.effective(x, c.rc)
	if !ok {
		s.metrics.refusedCalls.WithLabelValues("credential").Inc()
		_ = send(authErrorReply(c.xid, authTooWeak))
		return true
	}
	// The hot calls first, without allocating a request.
	switch {
	case c.proc == procGetattr && !s.cfg.GoNFSLookup:
		return s.fastAttr(rec, send, cr, x, id)
	case c.proc == procAccess:
		return s.fastAttr(rec, send, cr, x, id)
	case c.proc == procLookup && !s.cfg.GoNFSLookup:
		return s.fastLookup(rec, send, cr, x, id)
	case c.proc == procRead && !s.cfg.GoNFSRead:
		return s.fastRead(rec, send, cr, x, id)
	}
	k := &nfsReq{nfsCall: c, s: s, x: x, id: id, cred: cr, send: send}
	switch c.proc {
	case procLookup:
		return k.precheck(mayExec, true)
	case procRead:
		return k.precheck(mayRead, false)
	case procReaddir, procReaddirplus:
		return k.readdir()
	case procSetattr:
		return k.setattr()
	case procWrite:
		return k.write()
	case procCreate, procMkdir, procSymlink, procMknod:
		return k.create()
	case procRemove, procRmdir:
		return k.remove()
	case procRename:
		return k.rename()
	case procLink:
		return k.link()
	case procReadlink:
		return k.readlink()
	case procFsstat:
		return k.fsstat()
	case procFsinfo:
		return k.fsinfo()
	case procPathconf:
		return k.pathconf()
	case procCommit:
		return k.commit()
	}
	return false
}

// quickCall reports a call whose answer never waits for a flush to the
// disk (fanout answers such a call on the reading goroutine when the
// connection is otherwise idle): not COMMIT, not a WRITE that may be synced
// before its reply, not a namespace or attribute change under
// SyncMetadata. Reads may still wait for the disk, as long as one read.
func (s *Server) quickCall(rec []byte) bool {
	_, proc, args, ok := parseCall(rec)
	if !ok {
		return true // go-nfs refuses it
	}
	switch proc {
	case procCommit:
		return !s.cfg.syncWrites()
	case procWrite:
		if !s.cfg.syncWrites() {
			return true
		}
		// A WRITE at offset 0 may hold the whole file and be synced
		// at once (proc_change.go), any stable one is.
		r := xdrReader{b: args}
		r.opaque(nfs.FHSize)
		off := r.u64()
		r.u32()
		how := r.u32()
		return !r.bad && how == writeUnstable && off != 0
	case procSetattr, procCreate, procMkdir, procSymlink, procMknod,
		procRemove, procRmdir, procRename, procLink:
		return !s.cfg.syncMetadata()
	}
	return true
}

// RPC reply pieces.
const (
	authBadCred = 1
	authTooWeak = 5
)

func authErrorReply(xid, stat uint32) []byte {
	w := make([]byte, 4, 24)
	for _, v := range []uint32{xid, 1, 1, 1, stat} { // REPLY, MSG_DENIED, AUTH_ERROR
		w = binary.BigEndian.AppendUint32(w, v)
	}
	return finishReply(w)
}

func finishReply(w []byte) []byte {
	binary.BigEndian.PutUint32(w, uint32(len(w)-4)|0x80000000)
	return w
}

func newReply(xid, status uint32) []byte {
	w := make([]byte, 4, 256)
	w = appendReplyHeader(w, xid)
	return binary.BigEndian.AppendUint32(w, status)
}

// failBodyWords is the size, in XDR words, of each procedure's failure
// body with no attributes (post_op_attr and wcc_data "none" are zeros).
var failBodyWords = [...]int{
	procGetattr: 0, procSetattr: 2, procLookup: 1, procAccess: 1, procReadlink: 1,
	procRead: 1, procWrite: 2, procCreate: 2, procMkdir: 2, procSymlink: 2,
	procMknod: 2, procRemove: 2, procRmdir: 2, procRename: 4, procLink: 3,
	procReaddir: 1, procReaddirplus: 1, 18: 1, 19: 1, 20: 1, procCommit: 2,
}

// errorReply is a failure reply without attributes.
func errorReply(xid, proc, status uint32) []byte {
	w := newReply(xid, status)
	if int(proc) < len(failBodyWords) {
		w = append(w, make([]byte, 4*failBodyWords[proc])...)
	}
	return finishReply(w)
}

func (k *nfsReq) reply(w []byte) bool {
	_ = k.send(finishReply(w)) // a failed send closes the connection
	return true
}

// fail answers with status and no attributes.
func (k *nfsReq) fail(status uint32) bool {
	_ = k.send(errorReply(k.xid, k.proc, status))
	return true
}

// precheck enforces one permission on the handle's object and leaves the
// answer to go-nfs when granted. dirOnly: a non-directory is left to
// go-nfs (which answers NOTDIR).
func (k *nfsReq) precheck(want uint32, dirOnly bool) bool {
	x := k.x
	t := x.rlock()
	_, e, err := x.pathOf(t, k.id)
	x.mu.RUnlock()
	if err != nil || (dirOnly && !e.isDir()) {
		return false
	}
	ok := permits(k.cred, &e.st, want)
	if want == mayRead && !dirOnly {
		ok = e.isDir() || mayReadData(k.cred, &e.st)
	}
	if ok {
		return false
	}
	k.s.metrics.refusedCalls.WithLabelValues("permission").Inc()
	_ = k.send(errorReply(k.xid, k.proc, nfs3ErrAcces))
	return true
}

// statusOf maps an error of a file system operation to an nfsstat3, as
// knfsd's nfserrno does. Unknown errors are NFS3ERR_IO.
func statusOf(err error) uint32 {
	if err == nil {
		return nfs3OK
	}
	if errors.Is(err, errStale) {
		return nfs3ErrStale
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		if errors.Is(err, os.ErrNotExist) {
			return nfs3ErrNoEnt
		}
		if errors.Is(err, os.ErrExist) {
			return nfs3ErrExist
		}
		if errors.Is(err, os.ErrPermission) {
			return nfs3ErrAcces
		}
		return nfs3ErrIO
	}
	switch errno {
	case unix.EPERM:
		return nfs3ErrPerm
	case unix.ENOENT:
		return nfs3ErrNoEnt
	case unix.EACCES:
		return nfs3ErrAcces
	case unix.EEXIST:
		return nfs3ErrExist
	case unix.EXDEV:
		return nfs3ErrXDev
	case unix.ENOTDIR:
		return nfs3ErrNotDir
	case unix.EISDIR:
		return nfs3ErrIsDir
	case unix.EINVAL, unix.ELOOP:
		return nfs3ErrInval
	case unix.EFBIG:
		return nfs3ErrFBig
	case unix.ENOSPC:
		return nfs3ErrNoSpc
	case unix.EROFS:
		return nfs3ErrROFS
	case unix.EMLINK:
		return nfs3ErrMLink
	case unix.ENAMETOOLONG:
		return nfs3ErrNameTooLong
	case unix.ENOTEMPTY:
		return nfs3ErrNotEmpty
	case unix.EDQUOT:
		return nfs3ErrDQuot
	case unix.ESTALE:
		return nfs3ErrStale
	case unix.EBUSY:
		return nfs3ErrAcces
	case unix.EOPNOTSUPP:
		return nfs3ErrNotSupp
	case unix.ENXIO:
		return nfs3ErrNXIO
	case unix.E2BIG:
		return nfs3ErrFBig
	case unix.EBADF:
		return nfs3ErrStale
	case unix.ENODEV:
		return nfs3ErrNoDev
	case unix.EAGAIN, unix.ENOMEM, unix.ETIMEDOUT:
		return nfs3ErrJukebox // try again later
	case unix.ENFILE, unix.EMFILE:
		return nfs3ErrServerFault // the server is out of descriptors, not the client wrong
	}
	return nfs3ErrIO
}

// xdrReader decodes call arguments; any short read sets bad.
type xdrReader struct {
	b   []byte
	bad bool
}

func (r *xdrReader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *xdrReader) u64() uint64 {
	hi := r.u32()
	return uint64(hi)<<32 | uint64(r.u32())
}

func (r *xdrReader) opaque(max int) []byte {
	n := r.u32()
	if r.bad || int(n) > max || int(n) > len(r.b) {
		r.bad = true
		return nil
	}
	p := r.b[:n]
	pad := (int(n) + 3) &^ 3
	if pad > len(r.b) {
		r.bad = true
		return nil
	}
	r.b = r.b[pad:]
	return p
}

func (r *xdrReader) fixed(n int) []byte {
	if len(r.b) < n {
		r.bad = true
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

// Time settings of sattr3.
const (
	dontChange       = 0
	setToServerTime  = 1
	setToClientTime  = 2
	maxSymlinkTarget = 4095
)

// sattr3 decoded.
type sattr struct {
	setMode, setUID, setGID, setSize bool
	mode, uid, gid                   uint32
	size                             uint64
	atime, mtime                     uint32 // how
	atimeTS, mtimeTS                 unix.Timespec
}

func (r *xdrReader) sattr() sattr {
	var a sattr
	if a.setMode = r.u32() != 0; a.setMode {
		a.mode = r.u32()
	}
	if a.setUID = r.u32() != 0; a.setUID {
		a.uid = r.u32()
	}
	if a.setGID = r.u32() != 0; a.setGID {
		a.gid = r.u32()
	}
	if a.setSize = r.u32() != 0; a.setSize {
		a.size = r.u64()
	}
	for _, p := range []struct {
		how *uint32
		ts  *unix.Timespec
	}{{&a.atime, &a.atimeTS}, {&a.mtime, &a.mtimeTS}} {
		*p.how = r.u32()
		switch *p.how {
		case dontChange, setToServerTime:
		case setToClientTime:
			sec := int64(r.u32())
			*p.ts = unix.NsecToTimespec(sec*1e9 + int64(r.u32()))
		default:
			r.bad = true
		}
	}
	return a
}

// Attribute encoding with real times (go-nfs's ToFileAttribute sends mtime
// for all three).

func (x *export) attrOf(t *tree, e *entry) *nfs.FileAttribute {
	fi, err := x.info(t, e)
	if err != nil {
		return nil
	}
	return fattrOf(fi, e.path, x.fsid())
}

// fattrOf is go-nfs's ToFileAttribute with the real atime and ctime, and
// the mode without the os.FileMode type bits go-nfs leaves in it (mode3
// holds the 12 permission bits; the type travels in ftype3), and the
// export's fsid (go-nfs sends 0 for every export).
func fattrOf(fi *fileInfo, p string, fsid uint64) *nfs.FileAttribute {
	a := nfs.ToFileAttribute(fi, p)
	a.FSID = fsid
	a.FileMode &= 0o7777
	a.Atime = nfs.FileTime{Seconds: uint32(fi.atim.Sec), Nseconds: uint32(fi.atim.Nsec)}
	a.Ctime = nfs.FileTime{Seconds: uint32(fi.ctim.Sec), Nseconds: uint32(fi.ctim.Nsec)}
	return a
}

func appendPostOp(w []byte, a *nfs.FileAttribute) []byte {
	if a == nil {
		return binary.BigEndian.AppendUint32(w, 0)
	}
	w = binary.BigEndian.AppendUint32(w, 1)
	return appendFattr(w, a)
}

func appendPreOp(w []byte, st *unix.Stat_t) []byte {
	if st == nil {
		return binary.BigEndian.AppendUint32(w, 0)
	}
	w = binary.BigEndian.AppendUint32(w, 1)
	w = binary.BigEndian.AppendUint64(w, uint64(st.Size))
	for _, ts := range []unix.Timespec{st.Mtim, st.Ctim} {
		w = binary.BigEndian.AppendUint32(w, uint32(ts.Sec))
		w = binary.BigEndian.AppendUint32(w, uint32(ts.Nsec))
	}
	return w
}

// postOpAt resolves p afresh (after a change) for its attributes.
func (x *export) postOpAt(t *tree, p string) *nfs.FileAttribute {
	e, err := x.lookup(t, p)
	if err != nil {
		return nil
	}
	return x.attrOf(t, e)
}

func appendWcc(w []byte, pre *unix.Stat_t, post *nfs.FileAttribute) []byte {
	return appendPostOp(appendPreOp(w, pre), post)
}
