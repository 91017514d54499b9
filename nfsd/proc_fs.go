package nfsd

import (
	"encoding/binary"
	"math"

	"golang.org/x/sys/unix"
)

// READLINK, FSSTAT, FSINFO, PATHCONF and COMMIT, answered below go-nfs so
// that every reply with attributes carries nfsd's attributes (real times,
// the export's fsid) and every call the per-request export check. go-nfs
// answered FSSTAT with 2^62 bytes free whatever the disk held, PATHCONF
// with a link maximum of 1, and FSINFO with 1 GiB transfer sizes.

const (
	procFsstat   = 18
	procFsinfo   = 19
	procPathconf = 20
)

// Transfer sizes FSINFO offers: the Linux client's own maximum (1 MiB),
// which the fan-out's record limit and fastRead's buffers are sized for.
const (
	maxTransfer = 1 << 20
	// dirPref is the READDIR size nfsd suggests; go-nfs's value, which
	// the benchmarks were measured with.
	dirPref = 8192
	// linkMax is what PATHCONF reports, as knfsd does (EXT2_LINK_MAX).
	linkMax = 32000
)

// FSINFO properties (RFC 1813).
const (
	fsfLink        = 0x0001
	fsfSymlink     = 0x0002
	fsfHomogeneous = 0x0008
	fsfCanSetTime  = 0x0010
)

// fsid is the file system id of every attribute of this export: its
// persistent number (never 0), so a client sees each export as a file
// system of its own, the same after a restart.
func (x *export) fsid() uint64 { return uint64(x.number) }

// objectAttr resolves the call's handle for a reply that carries the
// object's attributes; false: stale (already answered).
func (k *nfsReq) objectAttr() (*entry, []byte, bool) {
	x := k.x
	t := x.rlock()
	defer x.mu.RUnlock()
	_, e, ok := k.object(t)
	if !ok {
		return nil, nil, false
	}
	w := newReply(k.xid, nfs3OK)
	return e, appendPostOp(w, x.attrOf(t, e)), true
}

// readlink: no permission check beyond the export's (as knfsd: a link's
// text is readable by whoever can look it up).
func (k *nfsReq) readlink() bool {
	e, w, ok := k.objectAttr()
	if !ok {
		return true
	}
	if !e.isSymlink() {
		setStatus(w, nfs3ErrInval)
		return k.reply(w)
	}
	target, err := hostReadlink(e.host)
	if err != nil {
		setStatus(w, statusOf(err))
		return k.reply(w)
	}
	return k.reply(appendString(w, target))
}

// fsstat reports the space and inodes of the export's writable layer (a
// volume's directory, a node's own layer), as statfs(2) there says.
func (k *nfsReq) fsstat() bool {
	_, w, ok := k.objectAttr()
	if !ok {
		return true
	}
	var sf unix.Statfs_t
	if err := unix.Statfs(k.x.t.layers[0].root, &sf); err != nil {
		setStatus(w, statusOf(err))
		return k.reply(w)
	}
	bs := uint64(sf.Bsize)
	for _, v := range []uint64{sf.Blocks * bs, sf.Bfree * bs, sf.Bavail * bs, sf.Files, sf.Ffree, sf.Ffree} {
		w = binary.BigEndian.AppendUint64(w, v)
	}
	w = binary.BigEndian.AppendUint32(w, 0) // invarsec: may change any time
	return k.reply(w)
}

func (k *nfsReq) fsinfo() bool {
	_, w, ok := k.objectAttr()
	if !ok {
		return true
	}
	for _, v := range []uint32{maxTransfer, maxTransfer, 4096, maxTransfer, maxTransfer, 4096, dirPref} {
		w = binary.BigEndian.AppendUint32(w, v)
	}
	w = binary.BigEndian.AppendUint64(w, math.MaxInt64) // maxfilesize
	w = binary.BigEndian.AppendUint32(w, 0)             // time_delta: 1 ns
	w = binary.BigEndian.AppendUint32(w, 1)
	return k.reply(binary.BigEndian.AppendUint32(w, fsfLink|fsfSymlink|fsfHomogeneous|fsfCanSetTime))
}

func (k *nfsReq) pathconf() bool {
	_, w, ok := k.objectAttr()
	if !ok {
		return true
	}
	// linkmax, name_max, no_trunc, chown_restricted (only root chowns),
	// case_insensitive, case_preserving.
	for _, v := range []uint32{linkMax, maxNameLen, 1, 1, 0, 1} {
		w = binary.BigEndian.AppendUint32(w, v)
	}
	return k.reply(w)
}

// commit makes the file's data durable: UNSTABLE WRITEs left it in the
// page cache. The reply carries the same verifier as the WRITEs: after a
// restart the verifier differs and the client sends its unstable data
// again. No permission check, as the data was checked when written (a file
// created 0444 is still committed).
func (k *nfsReq) commit() bool {
	r := k.argReader()
	_ = r.u64() // offset
	_ = r.u32() // count
	if r.bad {
		return false
	}
	x := k.x
	t := x.rlock()
	p, e, ok := k.object(t)
	x.mu.RUnlock()
	if !ok {
		return true
	}
	status := uint32(nfs3OK)
	switch {
	case e.isDir():
		status = nfs3ErrIsDir
	case !e.isRegular():
		status = nfs3ErrInval
	case k.s.cfg.syncWrites():
		status = statusOf(syncData(e.host))
	}
	pre := e.st
	t = x.rlock()
	w := appendWcc(newReply(k.xid, status), &pre, x.postOpAt(t, p))
	x.mu.RUnlock()
	if status == nfs3OK {
		w = append(w, k.s.writeVerf[:]...)
	}
	return k.reply(w)
}

// syncData fdatasyncs the regular file at host.
func syncData(host string) error {
	fd, err := hostOpen(host, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fdatasync(fd)
}

// setStatus overwrites the status of a reply built by newReply.
func setStatus(w []byte, status uint32) {
	binary.BigEndian.PutUint32(w[4+24:], status)
}

func appendString(w []byte, s string) []byte {
	w = binary.BigEndian.AppendUint32(w, uint32(len(s)))
	w = append(w, s...)
	return append(w, make([]byte, (4-len(s)%4)%4)...)
}
