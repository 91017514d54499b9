package nfsd

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Nodes on one image share the open files of image files; a node's own
// copy of a file stays in its own cache and reads its own content.
func TestLowerFilesShared(t *testing.T) {
	e := newEnv(t)
	img := newImage(t)
	e.nodes.set(Node{Name: "pi1", ImageRoot: img}, "")
	e.nodes.set(Node{Name: "pi2", ImageRoot: img}, "")
	x1, x2 := e.export("/nodes/pi1"), e.export("/nodes/pi2")
	for _, x := range []*export{x1, x2} {
		if got := readAll(t, x, "/etc/hostname"); got != "image\n" {
			t.Fatalf("%s: read %q", x.name, got)
		}
	}
	if n := len(e.srv.lowerFDs.m); n != 1 {
		t.Errorf("shared cache holds %d files after two nodes read one image file, want 1", n)
	}
	if len(x1.fds.m)+len(x2.fds.m) != 0 {
		t.Errorf("image file cached per export too")
	}
	writeFile(t, x1, "/etc/hostname", "pi1\n", os.O_WRONLY|os.O_TRUNC)
	if got := readAll(t, x1, "/etc/hostname"); got != "pi1\n" {
		t.Errorf("pi1 reads %q after its write", got)
	}
	if got := readAll(t, x2, "/etc/hostname"); got != "image\n" {
		t.Errorf("pi2 reads %q after pi1's write", got)
	}
	if len(x1.fds.m) != 1 {
		t.Errorf("pi1's own copy not in its own cache (%d files)", len(x1.fds.m))
	}
	if err := e.srv.Reset("pi1", true); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, x1, "/etc/hostname"); got != "image\n" {
		t.Errorf("pi1 reads %q after reset", got)
	}
}

// A full cache makes room for many inserts at once and never closes a
// file in use.
func TestFDCacheEviction(t *testing.T) {
	dir := t.TempDir()
	c := fdCache{max: 16}
	var held []*cachedFD
	for i := 0; i < 40; i++ {
		p := dir + "/f" + string(rune('a'+i))
		if err := os.WriteFile(p, []byte{byte('a' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		st := lstatT(t, p)
		fd, err := c.open(p, st)
		if err != nil {
			t.Fatal(err)
		}
		if i < 4 {
			held = append(held, fd) // in use
		} else {
			fd.done()
		}
		if len(c.m) > 16 {
			t.Fatalf("cache holds %d files, max 16", len(c.m))
		}
	}
	for i, fd := range held {
		// A closed descriptor's number may name another file by now:
		// the content says which file it is.
		var b [1]byte
		if _, err := fd.f.ReadAt(b[:], 0); err != nil || b[0] != byte('a'+i) {
			t.Errorf("file %d in use was closed: read %q, %v", i, b[:], err)
		}
		fd.done()
	}
}

func lstatT(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// READs through a file ask the kernel to read ahead once per half window;
// a jump elsewhere starts a new stream there.
func TestFDCacheReadAhead(t *testing.T) {
	p := t.TempDir() + "/big"
	if err := os.WriteFile(p, make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var c fdCache
	fd, err := c.open(p, lstatT(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.done()
	const mib, size = 1 << 20, 64 << 20
	steps := []struct {
		off, end  int64
		wantAhead int64
	}{
		{0, mib, mib + readAhead},                // a stream starts
		{mib, 2 * mib, mib + readAhead},          // well ahead already
		{5 * mib, 6 * mib, 6*mib + readAhead},    // less than half a window left
		{40 * mib, 41 * mib, 0},                  // a jump: no stream
		{41 * mib, 42 * mib, 42*mib + readAhead}, // the new stream
		{49 * mib, 50 * mib, 50*mib + readAhead},
		{57 * mib, 58 * mib, size}, // not past the end
	}
	for _, s := range steps {
		fd.readAhead(s.off, s.end, size)
		if got := fd.ahead.Load(); got != s.wantAhead {
			t.Fatalf("after a READ of [%d, %d) MiB: read ahead to %d MiB, want %d", s.off/mib, s.end/mib, got/mib, s.wantAhead/mib)
		}
	}
}
