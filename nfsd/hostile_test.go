package nfsd

import (
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// A record of a few dozen bytes whose length fields claim a gigabyte must
// not make the server allocate it: go-nfs's XDR decoding allocates what a
// length field says before reading, so nothing malformed may reach it.
func TestLengthFieldsDoNotAllocate(t *testing.T) {
	e, addr, _ := nfsEnv(t)
	const huge = 1 << 30
	fh := e.handle(t, "/nodes/pi1", "/")
	header := func(prog, vers, proc uint32, credLen uint32) []byte {
		w := []byte(nil)
		for _, v := range []uint32{5, 0, 2, prog, vers, proc, authUnix, credLen} {
			w = binary.BigEndian.AppendUint32(w, v)
		}
		return w
	}
	withCred := func(prog, vers, proc uint32) []byte {
		c := credRoot.encode()
		w := header(prog, vers, proc, uint32(len(c)))
		w = append(w, c...)
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(w, 0), 0) // verifier
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"credential length", header(nfsProgram, 3, procGetattr, huge)},
		{"verifier length", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(header(nfsProgram, 3, procGetattr, 0), authNone), huge)},
		{"mount path length", binary.BigEndian.AppendUint32(withCred(mountProgram, 3, 1), huge)},
		{"unmount path length", binary.BigEndian.AppendUint32(withCred(mountProgram, 3, 3), huge)},
		{"handle length", binary.BigEndian.AppendUint32(withCred(nfsProgram, 3, procGetattr), huge)},
		{"lookup name length", binary.BigEndian.AppendUint32(append(withCred(nfsProgram, 3, procLookup), xdrArgs(nil).opaque(fh)...), huge)},
		{"write data length", binary.BigEndian.AppendUint32(append(withCred(nfsProgram, 3, procWrite), xdrArgs(nil).opaque(fh).u64(0).u32(4).u32(0)...), huge)},
		{"symlink target length", binary.BigEndian.AppendUint32(append(withCred(nfsProgram, 3, procSymlink), xdrArgs(nil).opaque(fh).str("l").noSattr()...), huge)},
		{"NFS version 4 (go-nfs decodes it as 3): write data length", binary.BigEndian.AppendUint32(append(withCred(nfsProgram, 4, procWrite), xdrArgs(nil).opaque(fh).u64(0).u32(4).u32(0)...), huge)},
		{"MOUNT version 1 path length", binary.BigEndian.AppendUint32(withCred(mountProgram, 1, 1), huge)},
		{"stale handle, then a name", binary.BigEndian.AppendUint32(append(withCred(nfsProgram, 3, procLookup), xdrArgs(nil).opaque(make([]byte, handleLen))...), huge)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			rec := binary.BigEndian.AppendUint32(nil, uint32(len(tc.body))|0x80000000)
			if _, err := c.Write(append(rec, tc.body...)); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, c) // answered or closed
			runtime.ReadMemStats(&after)
			if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
				t.Errorf("the server allocated %d MiB for a %d-byte record", d>>20, len(tc.body))
			}
		})
	}
}

func TestAdmitGoNFS(t *testing.T) {
	call := func(prog, vers, proc uint32, args xdrArgs) []byte {
		w := make([]byte, 4)
		for _, v := range []uint32{77, 0, 2, prog, vers, proc, authNone, 0, 0, 0} {
			w = binary.BigEndian.AppendUint32(w, v)
		}
		return append(w, args...)
	}
	fh := make([]byte, handleLen)
	tests := []struct {
		name string
		rec  []byte
		want admit
	}{
		{"NFS NULL", call(nfsProgram, 3, 0, nil), admitOK},
		{"MOUNT MNT", call(mountProgram, 3, mountProcMn, xdrArgs(nil).str("/nodes/pi1")), admitOK},
		{"MOUNT EXPORT", call(mountProgram, 3, 5, nil), admitOK},
		{"an NFS call with a stale handle", call(nfsProgram, 3, procLookup, xdrArgs(nil).opaque(fh).str("etc")), admitOK},
		{"CREATE exclusive", call(nfsProgram, 3, procCreate, xdrArgs(nil).opaque(fh).str("f").u32(createExclusive).u64(1)), admitOK},
		{"SETATTR with times and guard", call(nfsProgram, 3, procSetattr, xdrArgs(nil).opaque(fh).u32(0).u32(0).u32(0).u32(0).u32(setToClientTime).u64(5).u32(1).u32(1).u64(9)), admitOK},
		{"RENAME", call(nfsProgram, 3, procRename, xdrArgs(nil).opaque(fh).str("a").opaque(fh).str("b")), admitOK},
		{"NFSv4 GETATTR (go-nfs decodes any version as 3)", call(nfsProgram, 4, 1, xdrArgs(nil).opaque(fh)), admitOK},
		{"NFSv2 WRITE data beyond the record", call(nfsProgram, 2, procWrite, xdrArgs(nil).opaque(fh).u64(0).u32(8).u32(0).u32(1<<30)), admitGarbage},
		{"unknown procedure", call(nfsProgram, 3, 99, xdrArgs(nil).u32(1<<30)), admitOK},
		{"a reply, not a call", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(make([]byte, 4), 77), 1), admitDrop},
		{"RPC version 3", func() []byte { r := call(nfsProgram, 3, 0, nil); binary.BigEndian.PutUint32(r[12:], 3); return r }(), admitDrop},
		{"truncated header", call(nfsProgram, 3, 0, nil)[:20], admitDrop},
		{"MNT path beyond the record", call(mountProgram, 3, mountProcMn, xdrArgs(nil).u32(100)), admitGarbage},
		{"MNT path over MNTPATHLEN", call(mountProgram, 3, mountProcMn, xdrArgs(nil).str(string(make([]byte, 1025)))), admitGarbage},
		{"handle over NFS3_FHSIZE", call(nfsProgram, 3, procGetattr, xdrArgs(nil).opaque(make([]byte, 65))), admitGarbage},
		{"second handle of LINK", call(nfsProgram, 3, procLink, xdrArgs(nil).opaque(fh).u32(1<<30)), admitGarbage},
		{"WRITE data beyond the record", call(nfsProgram, 3, procWrite, xdrArgs(nil).opaque(fh).u64(0).u32(8).u32(0).u32(8)), admitGarbage},
		{"MKNOD device without its numbers", call(nfsProgram, 3, procMknod, xdrArgs(nil).opaque(fh).str("c").u32(nf3Chr).noSattr()), admitGarbage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := admitGoNFS(tc.rec); got != tc.want {
				t.Fatalf("admit = %d, want %d", got, tc.want)
			}
		})
	}
}
