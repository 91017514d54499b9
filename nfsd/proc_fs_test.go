package nfsd

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// fattrFSID is the fsid of the fattr3 at the start of b.
func fattrFSID(b []byte) uint64 { return binary.BigEndian.Uint64(b[44:]) }

// TestFSIDPerExport: every attribute nfsd sends carries its export's
// persistent number as fsid (go-nfs sent 0 for all), the same after a
// restart, different between exports.
func TestFSIDPerExport(t *testing.T) {
	e, addr, _ := nfsEnv(t)
	fsids := func() [2]uint64 {
		var out [2]uint64
		for i, exp := range []string{"/nodes/pi1", "/volumes/www"} {
			rep := serve(t, e.srv, "127.0.0.1", callRecord(1, procGetattr, credRoot, xdrArgs(nil).opaque(e.handle(t, exp, "/"))))
			st, body := replyStatus(t, rep, 1)
			if st != nfs3OK {
				t.Fatalf("%s: status %d", exp, st)
			}
			out[i] = fattrFSID(body)
		}
		return out
	}
	before := fsids()
	if before[0] == 0 || before[1] == 0 || before[0] == before[1] {
		t.Fatalf("fsids %v: want two distinct non-zero", before)
	}
	e.restart(addr)
	if after := fsids(); after != before {
		t.Fatalf("fsids %v after a restart, %v before", after, before)
	}
}

// TestFsProcedures: READLINK, FSSTAT, FSINFO, PATHCONF and COMMIT,
// answered by nfsd with byte-level replies.
func TestFsProcedures(t *testing.T) {
	e, _, _ := nfsEnv(t)
	root := e.handle(t, "/nodes/pi1", "/")
	call := func(proc uint32, c testCred, args xdrArgs) (uint32, []byte) {
		t.Helper()
		return answered(t, e.srv, 3, proc, c, args)
	}
	// withAttrs checks a post_op_attr of the root export and returns what
	// follows it.
	withAttrs := func(body []byte, ftype uint32) []byte {
		t.Helper()
		if len(body) < 4+84 || binary.BigEndian.Uint32(body) != 1 {
			t.Fatalf("no post_op_attr: %x", body)
		}
		if got := binary.BigEndian.Uint32(body[4:]); got != ftype {
			t.Fatalf("attributes of type %d, want %d", got, ftype)
		}
		if fattrFSID(body[4:]) == 0 {
			t.Fatal("fsid 0")
		}
		return body[4+84:]
	}
	newObject := func(proc uint32, name string, extra xdrArgs) []byte {
		t.Helper()
		args := xdrArgs(nil).opaque(root).str(name)
		if proc == procSymlink {
			args = args.noSattr().str(string(extra))
		} else {
			args = args.u32(createGuarded).modeSattr(0o444)
		}
		st, body := call(proc, credUser, args)
		if st != nfs3OK {
			t.Fatalf("create %s: status %d", name, st)
		}
		n := binary.BigEndian.Uint32(body[4:])
		return append([]byte(nil), body[8:8+n]...)
	}
	// uid 1000 creates them in the image's /tmp (1777).
	root = e.handle(t, "/nodes/pi1", "/tmp")
	link := newObject(procSymlink, "l", xdrArgs("../etc/hostname"))
	file := newObject(procCreate, "f", nil)

	t.Run("readlink", func(t *testing.T) {
		st, body := call(procReadlink, credUser, xdrArgs(nil).opaque(link))
		if st != nfs3OK {
			t.Fatalf("status %d", st)
		}
		rest := withAttrs(body, 5)
		if want := xdrArgs(nil).str("../etc/hostname"); !bytes.Equal(rest, want) {
			t.Fatalf("target %x, want %x", rest, []byte(want))
		}
		st, body = call(procReadlink, credUser, xdrArgs(nil).opaque(file))
		if st != nfs3ErrInval || len(withAttrs(body, 1)) != 0 {
			t.Fatalf("readlink of a file: status %d body %x", st, body)
		}
	})
	t.Run("fsstat", func(t *testing.T) {
		st, body := call(procFsstat, credUser, xdrArgs(nil).opaque(root))
		if st != nfs3OK {
			t.Fatalf("status %d", st)
		}
		rest := withAttrs(body, 2)
		if len(rest) != 6*8+4 {
			t.Fatalf("fsstat body %x", rest)
		}
		v := func(i int) uint64 { return binary.BigEndian.Uint64(rest[8*i:]) }
		var sf unix.Statfs_t
		if err := unix.Statfs(e.state, &sf); err != nil {
			t.Fatal(err)
		}
		if v(0) != sf.Blocks*uint64(sf.Bsize) || v(0) < v(1) || v(1) < v(2) || v(3) != sf.Files || v(4) != v(5) {
			t.Fatalf("fsstat tbytes %d fbytes %d abytes %d tfiles %d ffiles %d afiles %d; statfs of the state dir: %d blocks of %d, %d files",
				v(0), v(1), v(2), v(3), v(4), v(5), sf.Blocks, sf.Bsize, sf.Files)
		}
	})
	t.Run("fsinfo", func(t *testing.T) {
		st, body := call(procFsinfo, credUser, xdrArgs(nil).opaque(root))
		if st != nfs3OK {
			t.Fatalf("status %d", st)
		}
		want := xdrArgs(nil).u32(1 << 20).u32(1 << 20).u32(4096).u32(1 << 20).u32(1 << 20).u32(4096).u32(8192).
			u64(1<<63 - 1).u32(0).u32(1).u32(0x1b)
		if rest := withAttrs(body, 2); !bytes.Equal(rest, want) {
			t.Fatalf("fsinfo %x, want %x", rest, []byte(want))
		}
	})
	t.Run("pathconf", func(t *testing.T) {
		st, body := call(procPathconf, credUser, xdrArgs(nil).opaque(file))
		if st != nfs3OK {
			t.Fatalf("status %d", st)
		}
		want := xdrArgs(nil).u32(32000).u32(255).u32(1).u32(1).u32(0).u32(1)
		if rest := withAttrs(body, 1); !bytes.Equal(rest, want) {
			t.Fatalf("pathconf %x, want %x", rest, []byte(want))
		}
	})
	t.Run("commit", func(t *testing.T) {
		// The file is 0444 and belongs to uid 1000: its data was
		// written when it was created, COMMIT asks no permission.
		st, body := call(procCommit, credUser, xdrArgs(nil).opaque(file).u64(0).u32(0))
		if st != nfs3OK || len(body) != 4+24+4+84+8 || !bytes.Equal(body[len(body)-8:], e.srv.writeVerf[:]) {
			t.Fatalf("commit: status %d body %x (verifier %x)", st, body, e.srv.writeVerf)
		}
		st, body = call(procCommit, credUser, xdrArgs(nil).opaque(root).u64(0).u32(0))
		if st != nfs3ErrIsDir || len(body) != 4+24+4+84 {
			t.Fatalf("commit of a directory: status %d body %x", st, body)
		}
	})
}

// TestWriteStability: an UNSTABLE WRITE that holds the whole file is
// synced and answered FILE_SYNC (no COMMIT needed), one that extends a
// file is left for COMMIT and answered UNSTABLE; FILE_SYNC is honoured;
// WRITE and COMMIT carry the same verifier.
func TestWriteStability(t *testing.T) {
	e, _, _ := nfsEnv(t)
	dir := e.handle(t, "/volumes/www", "/")
	call := func(proc uint32, args xdrArgs) (uint32, []byte) {
		t.Helper()
		return answered(t, e.srv, 4, proc, credRoot, args)
	}
	st, body := call(procCreate, xdrArgs(nil).opaque(dir).str("w").u32(createGuarded).modeSattr(0o644))
	if st != nfs3OK {
		t.Fatalf("create: %d", st)
	}
	f := append([]byte(nil), body[8:8+binary.BigEndian.Uint32(body[4:])]...)
	const wcc = 4 + 24 + 4 + 84
	for _, tc := range []struct {
		off       uint64
		how       uint32
		data      string
		committed uint32
	}{
		{0, writeUnstable, "hello", writeFileSync}, // the whole file
		{5, writeUnstable, " world", writeUnstable},
		{0, writeUnstable, "H", writeUnstable}, // part of a longer file
		{11, writeFileSync, "!", writeFileSync},
	} {
		st, body := call(procWrite, xdrArgs(nil).opaque(f).u64(tc.off).u32(uint32(len(tc.data))).u32(tc.how).str(tc.data))
		if st != nfs3OK || len(body) != wcc+16 {
			t.Fatalf("write at %d: status %d body %x", tc.off, st, body)
		}
		res := body[wcc:]
		if n, c := binary.BigEndian.Uint32(res), binary.BigEndian.Uint32(res[4:]); n != uint32(len(tc.data)) || c != tc.committed {
			t.Errorf("write %q at %d (stable_how %d): count %d committed %d, want %d", tc.data, tc.off, tc.how, n, c, tc.committed)
		}
		if !bytes.Equal(res[8:], e.srv.writeVerf[:]) {
			t.Errorf("write verifier %x, want %x", res[8:], e.srv.writeVerf)
		}
	}
	st, body = call(procCommit, xdrArgs(nil).opaque(f).u64(0).u32(0))
	if st != nfs3OK || !bytes.Equal(body[len(body)-8:], e.srv.writeVerf[:]) {
		t.Fatalf("commit: status %d body %x", st, body)
	}
	st, body = call(procRead, xdrArgs(nil).opaque(f).u64(0).u32(100))
	if st != nfs3OK || !bytes.Contains(body, []byte("Hello world!")) {
		t.Fatalf("read back: status %d body %q", st, body)
	}
}

// WRITE's post-operation attributes are the file's as GETATTR then reports
// them, byte for byte: for a file of the own layer (taken from the written
// descriptor) and for an image file (copied up first).
func TestWriteReplyAttributes(t *testing.T) {
	e, _, _ := nfsEnv(t)
	call := func(proc uint32, args xdrArgs) (uint32, []byte) {
		t.Helper()
		return answered(t, e.srv, 5, proc, credRoot, args)
	}
	root := e.handle(t, "/nodes/pi1", "/")
	st, body := call(procCreate, xdrArgs(nil).opaque(root).str("own").u32(createGuarded).modeSattr(0o640))
	if st != nfs3OK {
		t.Fatalf("create: %d", st)
	}
	own := append([]byte(nil), body[8:8+binary.BigEndian.Uint32(body[4:])]...)
	st, body = call(procCreate, xdrArgs(nil).opaque(e.handle(t, "/volumes/www", "/")).str("vol").u32(createGuarded).modeSattr(0o640))
	if st != nfs3OK {
		t.Fatalf("create on the volume: %d", st)
	}
	vol := append([]byte(nil), body[8:8+binary.BigEndian.Uint32(body[4:])]...)
	image := e.handle(t, "/nodes/pi1", "/etc/hostname")
	for _, tc := range []struct {
		name string
		fh   []byte
		off  uint64
	}{
		{"own layer, whole file", own, 0},
		{"own layer, appended", own, 5},
		{"image file, copied up", image, 1},
		{"volume", vol, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := call(procWrite, xdrArgs(nil).opaque(tc.fh).u64(tc.off).u32(5).u32(writeUnstable).str("hello"))
			if st != nfs3OK {
				t.Fatalf("write: %d", st)
			}
			const preOp = 4 + 24
			if binary.BigEndian.Uint32(body[preOp:]) != 1 {
				t.Fatal("write reply without post-op attributes")
			}
			post := body[preOp+4 : preOp+4+84]
			st, attr := call(procGetattr, xdrArgs(nil).opaque(tc.fh))
			if st != nfs3OK {
				t.Fatalf("getattr: %d", st)
			}
			if !bytes.Equal(post, attr[:84]) {
				t.Errorf("write's post-op attributes\n%x\ngetattr's\n%x", post, attr[:84])
			}
		})
	}
}
