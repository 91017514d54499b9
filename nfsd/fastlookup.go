package nfsd

import (
	"encoding/binary"
	"net"
)

// LOOKUP is answered below go-nfs when the directory handle is valid and
// the name an ordinary one, like READ (fastread.go), for the boot-storm
// case: every node looks up the same few hundred paths. go-nfs resolves
// the directory twice (FromHandle, then an lstat) and encodes the reply
// through reflection; here the directory resolved to check the handle is
// the one whose attributes are sent, the name is resolved once, and the
// reply is written with appendFattr. The answers are go-nfs's, byte for
// byte (TestFastLookupMatchesGoNFS): NFS3_OK with the handle ToHandle gives
// and both post_op_attrs, or NFS3ERR_NOENT with no attributes when the
// name does not resolve. Anything else — a bad or stale handle, a handle
// that is not a directory, ".", "..", a name go-nfs's Join would refuse, a
// name longer than NFS's 255 bytes, any other error — goes to go-nfs
// untouched.

const (
	procLookup   = 3
	maxNameLen   = 255
	nfs3ErrNoEnt = 2
)

// parsedLookup is a decoded LOOKUP3args with its RPC xid.
type parsedLookup struct {
	xid  uint32
	fh   []byte
	name string
}

// parseCall decodes an NFSv3 call's RPC header (record mark included) and
// returns xid, procedure and the arguments.
func parseCall(rec []byte) (xid, proc uint32, args []byte, ok bool) {
	b := rec[4:]
	if len(b) < 24 {
		return 0, 0, nil, false
	}
	u := func(i int) uint32 { return binary.BigEndian.Uint32(b[4*i:]) }
	// xid, CALL, RPC version 2, program, version
	if u(1) != 0 || u(2) != 2 || u(3) != nfsProgram || u(4) != 3 {
		return 0, 0, nil, false
	}
	xid, proc = u(0), u(5)
	b = b[24:]
	for i := 0; i < 2; i++ { // credential and verifier: flavor, opaque body
		if len(b) < 8 {
			return 0, 0, nil, false
		}
		n := binary.BigEndian.Uint32(b[4:])
		if n > 400 {
			return 0, 0, nil, false
		}
		pad := 8 + (int(n)+3)&^3
		if pad > len(b) {
			return 0, 0, nil, false
		}
		b = b[pad:]
	}
	return xid, proc, b, true
}

func parseLookup(rec []byte) (parsedLookup, bool) {
	var r parsedLookup
	xid, proc, b, ok := parseCall(rec)
	if !ok || proc != procLookup || len(b) < 4+handleLen+4 {
		return r, false
	}
	// Only nfsd's own 32-byte handles: go-nfs reads opaques without their
	// XDR padding, so for other lengths it would read another name.
	if binary.BigEndian.Uint32(b) != handleLen {
		return r, false
	}
	r.xid, r.fh = xid, b[4:4+handleLen]
	b = b[4+handleLen:]
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > maxNameLen || 4+int(n) > len(b) {
		return r, false
	}
	r.name = string(b[4 : 4+n])
	return r, true
}

// badName reports names go-nfs treats specially ("." and "..") or that
// export.Join marks as unresolvable.
func badName(n string) bool {
	if n == "" || n == "." || n == ".." {
		return true
	}
	for i := 0; i < len(n); i++ {
		if n[i] == '/' || n[i] == 0 {
			return true
		}
	}
	return false
}

// fastLookup answers a LOOKUP record; false means go-nfs must answer it.
// x and id are the export and identity serveCall found for the handle.
func (s *Server) fastLookup(rec []byte, send func([]byte) error, cr cred, x *export, id fileID) bool {
	req, ok := parseLookup(rec)
	if !ok || badName(req.name) {
		return false
	}
	// One request, one reqFS: the directory resolved to check the handle
	// and the name resolved below answer ToHandle's resolution too.
	r := &reqFS{export: x}
	t := x.rlock()
	dir, de, err := x.pathOf(t, id)
	if err != nil || !de.isDir() {
		x.mu.RUnlock()
		return false
	}
	dfi, err := x.info(t, de)
	if err != nil {
		x.mu.RUnlock()
		return false
	}
	if !permits(cr, &de.st, mayExec) {
		x.mu.RUnlock()
		// No search permission on the directory: knfsd's answer, with
		// the directory's attributes.
		w := newReply(req.xid, nfs3ErrAcces)
		w = binary.BigEndian.AppendUint32(w, 1)
		w = appendFattr(w, fattrOf(dfi, dir, x.fsid()))
		s.metrics.refusedCalls.WithLabelValues("permission").Inc()
		_ = send(finishReply(w))
		return true
	}
	r.memo.slot[0] = memoSlot{gen: x.cache.generation(), path: dir, e: de}
	r.memo.next = 1
	p := joinPath(dir, req.name)
	ce, err := r.lookup(x, t, p)
	var cfi *fileInfo
	if err == nil {
		cfi, err = x.info(t, ce)
	}
	x.mu.RUnlock()

	w := make([]byte, 4, 4+24+4+4+handleLen+2*(4+84))
	w = appendReplyHeader(w, req.xid)
	if err != nil {
		// go-nfs: any error resolving the name is NFS3ERR_NOENT, with
		// post_op_attr "none" as the whole body.
		w = binary.BigEndian.AppendUint32(w, nfs3ErrNoEnt)
		w = binary.BigEndian.AppendUint32(w, 0)
	} else {
		fh := (&handler{s: s}).ToHandle(r, pathElems(p))
		if len(fh) != handleLen {
			return false
		}
		w = binary.BigEndian.AppendUint32(w, 0) // NFS3_OK
		w = binary.BigEndian.AppendUint32(w, uint32(len(fh)))
		w = append(w, fh...)
		w = binary.BigEndian.AppendUint32(w, 1)
		w = appendFattr(w, fattrOf(cfi, p, x.fsid()))
		w = binary.BigEndian.AppendUint32(w, 1)
		w = appendFattr(w, fattrOf(dfi, dir, x.fsid()))
	}
	binary.BigEndian.PutUint32(w, uint32(len(w)-4)|0x80000000)
	// Counted before the send: a client that has its reply sees the count.
	s.metrics.fastLookups.Inc()
	_ = send(w) // a failed send closes the connection
	return true
}

// appendReplyHeader appends an accepted, successful RPC reply header with
// an AUTH_NULL verifier, as go-nfs writes it.
func appendReplyHeader(w []byte, xid uint32) []byte {
	for _, v := range []uint32{xid, 1, 0, 0, 0, 0} { // xid, REPLY, MSG_ACCEPTED, AUTH_NULL verifier, SUCCESS
		w = binary.BigEndian.AppendUint32(w, v)
	}
	return w
}

// fastCall answers rec as served to a client at from (benchmarks).
func (s *Server) fastCall(from net.Addr, rec []byte, send func([]byte) error) bool {
	return s.serveCall(from, rec, send)
}
