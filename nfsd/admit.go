package nfsd

import "encoding/binary"

// go-nfs decodes XDR by allocating whatever a length field claims and only
// then reading it: a 40-byte record whose verifier claims 1 GiB cost the
// server 1 GiB, and a few of them in a row an out-of-memory kill
// (FuzzServerRecords found it). So a record reaches go-nfs only after
// admitGoNFS has walked every length field go-nfs will read — the RPC
// header's credential and verifier, MOUNT's paths, an NFSv3 call's
// arguments — and found each within the record and its protocol's bound.

// admit says what to do with a record before go-nfs sees it.
type admit int

const (
	admitOK      admit = iota
	admitGarbage       // answer GARBAGE_ARGS: the header is sound, the arguments are not
	admitDrop          // not a sound RPC call: drop it and close the connection
)

const (
	rpcAuthMax  = 400  // RFC 5531: opaque_auth bodies hold at most 400 bytes
	mntPathLen  = 1024 // RFC 1813 MNTPATHLEN
	nfs3FHSize  = 64   // RFC 1813 NFS3_FHSIZE
	nfsNameMax  = 4096 // bound on filename3 (names over 255 bytes are refused later)
	nfsPathMax  = 4096 // bound on nfspath3 (symlink data)
	mountProcMn = 1    // MOUNTPROC3_MNT
	mountProcUm = 3    // MOUNTPROC3_UMNT
)

// admitGoNFS checks rec (record mark included) and returns its xid.
func admitGoNFS(rec []byte) (uint32, admit) {
	c := xdrCheck{b: rec[min(4, len(rec)):]}
	xid, msgType := c.u32(), c.u32()
	if c.bad || msgType != 0 {
		return xid, admitDrop // go-nfs answers only calls
	}
	rpcVers, prog, _, proc := c.u32(), c.u32(), c.u32(), c.u32()
	c.u32()
	c.opaque(rpcAuthMax) // credential
	c.u32()
	c.opaque(rpcAuthMax) // verifier
	if c.bad || rpcVers != 2 {
		return xid, admitDrop
	}
	switch {
	case prog == mountProgram && (proc == mountProcMn || proc == mountProcUm):
		c.opaque(mntPathLen)
	case prog == nfsProgram:
		// go-nfs picks its handler by program and procedure alone: a
		// call of any version is decoded as NFSv3.
		c.nfs3Args(proc)
	}
	if c.bad {
		return xid, admitGarbage
	}
	return xid, admitOK
}

// nfs3Args walks the arguments of NFSv3 procedure proc (RFC 1813).
func (c *xdrCheck) nfs3Args(proc uint32) {
	if proc == 0 || proc > procCommit {
		return // NULL, or PROC_UNAVAIL: no arguments read
	}
	c.opaque(nfs3FHSize)
	switch proc {
	case procSetattr:
		c.sattr()
		if c.u32() != 0 { // guard
			c.skip(8)
		}
	case procLookup, procRemove, procRmdir:
		c.opaque(nfsNameMax)
	case procWrite:
		c.skip(16) // offset, count, stable
		c.opaque(maxRecord)
	case procCreate:
		c.opaque(nfsNameMax)
		switch c.u32() {
		case createUnchecked, createGuarded:
			c.sattr()
		case createExclusive:
			c.skip(8)
		}
	case procMkdir:
		c.opaque(nfsNameMax)
		c.sattr()
	case procSymlink:
		c.opaque(nfsNameMax)
		c.sattr()
		c.opaque(nfsPathMax)
	case procMknod:
		c.opaque(nfsNameMax)
		switch c.u32() {
		case nf3Chr, nf3Blk:
			c.sattr()
			c.skip(8)
		case nf3Sock, nf3Fifo:
			c.sattr()
		}
	case procRename:
		c.opaque(nfsNameMax)
		c.opaque(nfs3FHSize)
		c.opaque(nfsNameMax)
	case procLink:
		c.opaque(nfs3FHSize)
		c.opaque(nfsNameMax)
	}
	// The other procedures' arguments after the handle have fixed sizes
	// go-nfs reads without allocating by a length.
}

// xdrCheck walks XDR without keeping anything; bad once anything does not
// fit.
type xdrCheck struct {
	b   []byte
	bad bool
}

func (c *xdrCheck) skip(n int) {
	if n < 0 || len(c.b) < n {
		c.bad, c.b = true, nil
		return
	}
	c.b = c.b[n:]
}

func (c *xdrCheck) u32() uint32 {
	if len(c.b) < 4 {
		c.bad, c.b = true, nil
		return 0
	}
	v := binary.BigEndian.Uint32(c.b)
	c.b = c.b[4:]
	return v
}

func (c *xdrCheck) opaque(max int) {
	n := c.u32()
	if c.bad || n > uint32(max) {
		c.bad, c.b = true, nil
		return
	}
	c.skip((int(n) + 3) &^ 3)
}

// sattr skips a sattr3: mode, uid, gid (set flag and value), size (set
// flag and 64-bit value), atime and mtime (how, and a time when how is
// SET_TO_CLIENT_TIME).
func (c *xdrCheck) sattr() {
	for range 3 {
		if c.u32() != 0 {
			c.skip(4)
		}
	}
	if c.u32() != 0 {
		c.skip(8)
	}
	for range 2 {
		if c.u32() == setToClientTime {
			c.skip(8)
		}
	}
}

// garbageArgsReply is an accepted RPC reply with GARBAGE_ARGS.
func garbageArgsReply(xid uint32) []byte {
	w := make([]byte, 4, 28)
	for _, v := range []uint32{xid, 1, 0, 0, 0, 4} { // REPLY, MSG_ACCEPTED, AUTH_NULL verifier, GARBAGE_ARGS
		w = binary.BigEndian.AppendUint32(w, v)
	}
	binary.BigEndian.PutUint32(w, uint32(len(w)-4)|0x80000000)
	return w
}
