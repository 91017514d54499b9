package nfsd

import (
	"encoding/binary"
)

// GETATTR and ACCESS are answered below go-nfs for valid handles, as READ
// and LOOKUP are: kernel clients send them for every revalidation, and
// go-nfs resolves the object twice for each (FromHandle, then an lstat);
// here the resolution that checks the handle gives the attributes. GETATTR
// replies are go-nfs's byte for byte (TestFastAttrMatchesGoNFS); ACCESS
// answers what the caller may do (perm.go), where go-nfs granted the mask
// asked for. Anything else — a bad
// or stale handle, an object whose attributes cannot be read — goes to
// go-nfs untouched.

const (
	procGetattr = 1
	procAccess  = 4
)

// parseAttrCall decodes GETATTR3args or ACCESS3args (handle, then the
// access mask).
func parseAttrCall(rec []byte) (xid, proc uint32, fh []byte, mask uint32, ok bool) {
	xid, proc, b, ok := parseCall(rec)
	if !ok || len(b) < 4 || binary.BigEndian.Uint32(b) != handleLen {
		return 0, 0, nil, 0, false
	}
	switch {
	case proc == procGetattr && len(b) == 4+handleLen:
	case proc == procAccess && len(b) == 4+handleLen+4:
		mask = binary.BigEndian.Uint32(b[4+handleLen:])
	default:
		return 0, 0, nil, 0, false
	}
	return xid, proc, b[4 : 4+handleLen], mask, true
}

// fastAttr answers a GETATTR or ACCESS record; false means go-nfs must.
// x and id are the export and identity serveCall found for the handle.
func (s *Server) fastAttr(rec []byte, send func([]byte) error, cr cred, x *export, id fileID) bool {
	xid, proc, _, mask, ok := parseAttrCall(rec)
	if !ok {
		return false
	}
	t := x.rlock()
	p, e, err := x.pathOf(t, id)
	if err != nil {
		x.mu.RUnlock()
		return false
	}
	fi, err := x.info(t, e)
	x.mu.RUnlock()
	if err != nil {
		return false
	}
	st := e.st
	w := make([]byte, 4, 4+24+4+4+84+4)
	w = appendReplyHeader(w, xid)
	w = binary.BigEndian.AppendUint32(w, 0) // NFS3_OK
	if proc == procAccess {
		w = binary.BigEndian.AppendUint32(w, 1) // post_op_attr follows
	}
	w = appendFattr(w, fattrOf(fi, p, x.fsid()))
	if proc == procAccess {
		w = binary.BigEndian.AppendUint32(w, accessMask(cr, &st, mask, x.writable.Load()))
	}
	binary.BigEndian.PutUint32(w, uint32(len(w)-4)|0x80000000)
	// Counted before the send: a client that has its reply sees the count.
	s.metrics.fastAttrs.Inc()
	_ = send(w) // a failed send closes the connection
	return true
}
