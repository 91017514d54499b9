package nfsd

import (
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLongPaths: objects whose host path is longer than PATH_MAX (a client
// names them relative to a handle, pjdfstest's 4,095-byte paths) are
// created, changed, listed, linked, renamed and removed like any other, on
// a node root and on a volume.
func TestLongPaths(t *testing.T) {
	e, _, _ := nfsEnv(t)
	for _, exp := range []string{"/nodes/pi1", "/volumes/www"} {
		t.Run(strings.Trim(exp, "/"), func(t *testing.T) {
			n := uint32(0)
			call := func(proc uint32, args xdrArgs) (uint32, []byte) {
				t.Helper()
				n++
				return answered(t, e.srv, n, proc, credRoot, args)
			}
			newHandle := func(body []byte) []byte {
				l := binary.BigEndian.Uint32(body[4:])
				return append([]byte(nil), body[8:8+l]...)
			}
			name := strings.Repeat("d", 200)
			dirs := [][]byte{e.handle(t, exp, "/")}
			for len(dirs) < 25 { // 24 levels of 201 bytes: 4,824 bytes
				st, body := call(procMkdir, xdrArgs(nil).opaque(dirs[len(dirs)-1]).str(name).modeSattr(0o755))
				if st != nfs3OK {
					t.Fatalf("mkdir at depth %d: status %d", len(dirs), st)
				}
				dirs = append(dirs, newHandle(body))
			}
			deep := dirs[len(dirs)-1]
			st, body := call(procCreate, xdrArgs(nil).opaque(deep).str("f").u32(createGuarded).modeSattr(0o644))
			if st != nfs3OK {
				t.Fatalf("create: status %d", st)
			}
			f := newHandle(body)
			steps := []struct {
				what string
				proc uint32
				args xdrArgs
			}{
				{"write", procWrite, xdrArgs(nil).opaque(f).u64(0).u32(5).u32(2).str("hello")},
				{"read", procRead, xdrArgs(nil).opaque(f).u64(0).u32(5)},
				{"chmod", procSetattr, xdrArgs(nil).opaque(f).modeSattr(0o4755).u32(0)},
				{"getattr", procGetattr, xdrArgs(nil).opaque(f)},
				{"link", procLink, xdrArgs(nil).opaque(f).opaque(deep).str("g")},
				{"rename", procRename, xdrArgs(nil).opaque(deep).str("g").opaque(deep).str("h")},
				{"symlink", procSymlink, xdrArgs(nil).opaque(deep).str("s").noSattr().str("f")},
				{"mknod fifo", procMknod, xdrArgs(nil).opaque(deep).str("p").u32(nf3Fifo).modeSattr(0o600)},
				{"lookup", procLookup, xdrArgs(nil).opaque(deep).str("h")},
				{"readdirplus", procReaddirplus, xdrArgs(nil).opaque(deep).u64(0).u64(0).u32(4096).u32(65536)},
				{"remove", procRemove, xdrArgs(nil).opaque(deep).str("h")},
				{"remove", procRemove, xdrArgs(nil).opaque(deep).str("s")},
				{"remove", procRemove, xdrArgs(nil).opaque(deep).str("p")},
				{"remove", procRemove, xdrArgs(nil).opaque(deep).str("f")},
			}
			for _, s := range steps {
				if st, _ := call(s.proc, s.args); st != nfs3OK {
					t.Fatalf("%s: status %d", s.what, st)
				}
			}
			for i := len(dirs) - 2; i >= 0; i-- {
				if st, _ := call(procRmdir, xdrArgs(nil).opaque(dirs[i]).str(name)); st != nfs3OK {
					t.Fatalf("rmdir at depth %d: status %d", i, st)
				}
			}
		})
	}
}

func TestShortHost(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	p := dir
	for len(p) < 3*unix.PathMax {
		p += "/" + strings.Repeat("x", 255)
		if err := hostMkdir(p, 0o755); err != nil {
			t.Fatalf("mkdir at %d bytes: %v", len(p), err)
		}
	}
	var st unix.Stat_t
	if err := hostLstat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("lstat of %d bytes: %v", len(p), err)
	}
	q, release, err := shortHost(p)
	if err != nil || len(q) >= unix.PathMax {
		t.Fatalf("shortHost: %d bytes, %v", len(q), err)
	}
	release()
	if err := unix.Lstat(p, &st); err != unix.ENAMETOOLONG {
		t.Fatalf("the kernel took a %d-byte path: %v", len(p), err)
	}
	if err := hostRemoveAll(dir + "/" + strings.Repeat("x", 255)); err != nil {
		t.Fatal(err)
	}
}
