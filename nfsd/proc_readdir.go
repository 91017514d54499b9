package nfsd

import (
	"encoding/binary"
	"os"
	"sort"
)

// READDIR and READDIRPLUS are answered below go-nfs: go-nfs gives "." the
// cookie 0 (the value that means "from the start") and only starts output
// after an entry whose cookie equals the one asked for, so a listing
// resumed at cookie 1 (right after "..") came back empty and at end of
// directory. Here the listing is ".", "..", then the entries sorted by
// name; the entry at position i has cookie i+1, and a call with cookie c
// continues at position c. A listing is kept (listingCache, by its
// verifier) while a client pages through it, so its pages fit together;
// the verifier is a hash of the directory's names, so it changes when the
// directory does. A cookie from an older listing continues at the same
// position of the current one (as a file system offset would), rather than
// failing with NFS3ERR_BAD_COOKIE.

const nfs3ErrTooSmall = 10005

func (k *nfsReq) readdir() bool {
	plus := k.proc == procReaddirplus
	r := k.argReader()
	cookie := r.u64()
	verf := r.u64()
	maxBytes := r.u32() // READDIR: count
	dirBytes := maxBytes
	if plus {
		dirBytes, maxBytes = maxBytes, r.u32()
	}
	if r.bad {
		return false
	}
	x := k.x
	t := x.rlock()
	p, e, ok := k.object(t)
	if !ok {
		x.mu.RUnlock()
		return true
	}
	dirAttr := x.attrOf(t, e)
	if !e.isDir() {
		x.mu.RUnlock()
		return k.reply(appendPostOp(newReply(k.xid, nfs3ErrNotDir), dirAttr))
	}
	if !permits(k.cred, &e.st, mayRead) {
		x.mu.RUnlock()
		k.s.metrics.refusedCalls.WithLabelValues("permission").Inc()
		return k.reply(appendPostOp(newReply(k.xid, nfs3ErrAcces), dirAttr))
	}
	dotID := fileID(dirAttr.Fileid)
	dotdotID := dotID
	if p != "/" {
		parent, _ := splitPath(p)
		if pe, err := x.lookup(t, parent); err == nil {
			if id, err := x.idOf(t, pe); err == nil {
				dotdotID = id
			}
		}
	}
	x.mu.RUnlock()

	h := &handler{s: k.s}
	var contents []os.FileInfo
	if cookie != 0 && verf != 0 {
		contents = h.DataForVerifier(p, verf)
	}
	if contents == nil {
		var err error
		if contents, err = x.ReadDir(p); err != nil {
			return k.reply(appendPostOp(newReply(k.xid, statusOf(err)), dirAttr))
		}
		sort.Slice(contents, func(i, j int) bool { return contents[i].Name() < contents[j].Name() })
		verf = h.VerifierFor(p, contents)
	}

	w := newReply(k.xid, nfs3OK)
	w = appendPostOp(w, dirAttr)
	w = binary.BigEndian.AppendUint64(w, verf)
	const fixed = 4 + 4 + 84 + 8 + 4 + 4 // status, dir attributes, verifier, list end, eof
	used, dirUsed := uint32(fixed), uint32(0)
	n := 0
	eof := true
	total := 2 + len(contents)
	for i := int(min(cookie, uint64(total))); i < total; i++ {
		var name string
		var id fileID
		var fi *fileInfo
		switch i {
		case 0:
			name, id = ".", dotID
		case 1:
			name, id = "..", dotdotID
		default:
			fi, _ = contents[i-2].(*fileInfo)
			if fi == nil {
				continue
			}
			name, id = fi.name, fileID(fi.sys.Fileid)
		}
		pad := (len(name) + 3) &^ 3
		size := uint32(4 + 8 + 4 + pad + 8)
		dsize := uint32(8 + 4 + pad + 8)
		if plus {
			size += 4 + 84 + 4 + 4 + handleLen
		}
		if used+size > maxBytes || dirUsed+dsize > dirBytes {
			eof = false
			break
		}
		used += size
		dirUsed += dsize
		n++
		w = binary.BigEndian.AppendUint32(w, 1) // value follows
		w = binary.BigEndian.AppendUint64(w, uint64(id))
		w = binary.BigEndian.AppendUint32(w, uint32(len(name)))
		w = append(w, name...)
		w = append(w, make([]byte, pad-len(name))...)
		w = binary.BigEndian.AppendUint64(w, uint64(i+1))
		if !plus {
			continue
		}
		switch {
		case i == 0:
			w = appendPostOp(w, dirAttr)
			w = k.appendHandle(w, id, p)
		case fi != nil:
			cp := joinPath(p, name)
			w = appendPostOp(w, fattrOf(fi, cp, x.fsid()))
			w = k.appendHandle(w, id, cp)
		default: // "..": no attributes, no handle
			w = binary.BigEndian.AppendUint32(w, 0)
			w = binary.BigEndian.AppendUint32(w, 0)
		}
	}
	if n == 0 && !eof {
		return k.reply(appendPostOp(newReply(k.xid, nfs3ErrTooSmall), dirAttr))
	}
	w = binary.BigEndian.AppendUint32(w, 0) // no more entries
	if eof {
		w = binary.BigEndian.AppendUint32(w, 1)
	} else {
		w = binary.BigEndian.AppendUint32(w, 0)
	}
	return k.reply(w)
}

// appendHandle appends a post_op_fh3 naming id (found at p).
func (k *nfsReq) appendHandle(w []byte, id fileID, p string) []byte {
	k.x.cache.putPath(id, p)
	fh := k.s.codec.encode(k.x.number, id)
	w = binary.BigEndian.AppendUint32(w, 1)
	w = binary.BigEndian.AppendUint32(w, uint32(len(fh)))
	return append(w, fh...)
}
