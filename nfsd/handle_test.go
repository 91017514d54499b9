package nfsd

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestHandleCodec(t *testing.T) {
	c := newHandleCodec(bytes.Repeat([]byte{1}, handleKeyLen))
	for _, id := range []fileID{rootID, inodeID(12345), seqID(1), roleID("/etc/x"), ^fileID(0)} {
		fh := c.encode(42, id)
		if len(fh) != handleLen || len(fh)%4 != 0 {
			t.Fatalf("handle length %d", len(fh))
		}
		n, got, err := c.decode(fh)
		if err != nil || n != 42 || got != id {
			t.Fatalf("round trip %x: %d %x %v", id, n, got, err)
		}
	}
	other := newHandleCodec(bytes.Repeat([]byte{2}, handleKeyLen))
	if _, _, err := other.decode(c.encode(1, rootID)); err == nil {
		t.Fatal("handle accepted under another key")
	}
}

func TestHandleKeyPersists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nfsd", "handle.key")
	k1, err := loadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadOrCreateKey(p)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatal("key changed between loads")
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateKey(p); err == nil {
		t.Fatal("truncated key accepted")
	}
}

// FuzzHandleDecode: any bytes a client sends as a handle must be refused
// or resolved, never crash the server; only handles the server made
// resolve. The seed corpus (testdata/fuzz/FuzzHandleDecode) holds real
// handles and near misses and is replayed by plain `go test`.
func FuzzHandleDecode(f *testing.F) {
	e := newEnv(f)
	img := newImage(f)
	e.nodes.set(Node{Name: "pi1", ImageRoot: img}, "127.0.0.1")
	x := e.export("/nodes/pi1")
	h := &handler{s: e.srv}
	writeFile(f, x, "/tmp/own", "x", os.O_RDWR|os.O_CREATE)
	valid := map[string]bool{}
	for _, p := range [][]string{{}, {"etc", "hostname"}, {"tmp", "own"}, {"usr", "bin", "sudo"}} {
		fh := h.ToHandle(x, p)
		valid[string(fh)] = true
		f.Add(fh)
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, handleLen))
	f.Fuzz(func(t *testing.T, fh []byte) {
		fs, p, err := h.FromHandle(fh)
		if err != nil {
			return
		}
		if fs == nil {
			t.Fatal("no error and no file system")
		}
		if !valid[string(fh)] {
			// A MAC collision would be needed: treat any other accepted
			// handle as a forgery that got through.
			t.Fatalf("unknown handle %x accepted as %v", fh, p)
		}
	})
}

// TestRecordsRecoveredAfterCrash: the server dies before its record batch
// is committed; handles of files created and moved just before must still
// resolve in the next process (rebuilt from the own layer).
func TestRecordsRecoveredAfterCrash(t *testing.T) {
	e, _ := nodeEnv(t)
	x := e.export("/nodes/pi1")
	h := &handler{s: e.srv}
	writeFile(t, x, "/tmp/a", "a", os.O_RDWR|os.O_CREATE)
	if err := x.MkdirAll("/tmp/d", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, x, "/tmp/d/b", "b", os.O_RDWR|os.O_CREATE)
	if err := x.Rename("/etc/hostname", "/tmp/d/h"); err != nil { // a lower file, moved
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, p := range []string{"/tmp/a", "/tmp/d", "/tmp/d/b", "/tmp/d/h"} {
		want[string(h.ToHandle(x, pathElems(p)))] = p
	}
	// "Crash": a new server on the same state; the old one never flushed.
	e.newServer()
	h2 := &handler{s: e.srv}
	for fh, p := range want {
		_, got, err := h2.FromHandle([]byte(fh))
		if err != nil || "/"+strings.Join(got, "/") != p {
			t.Errorf("%s: resolved to %v, %v", p, got, err)
		}
	}
}

// TestSharedImageMemory: 20 nodes on one image walking all of it share
// one image index; what each node adds is its caches, bounded by the files
// it touched, not a copy of the image.
func TestSharedImageMemory(t *testing.T) {
	e := newEnv(t)
	img := filepath.Join(t.TempDir(), "big")
	var files []imgFile
	for d := 0; d < 40; d++ {
		for i := 0; i < 50; i++ {
			files = append(files, imgFile{path: "usr/share/d" + itoa3(d) + "/f" + itoa3(i), mode: 0o644, content: "x"})
		}
	}
	buildTree(t, img, files)
	walkAll := func(x *export) int {
		n := 0
		var walk func(p string)
		walk = func(p string) {
			list, err := x.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, fi := range list {
				n++
				c := joinPath(p, fi.Name())
				h := &handler{s: e.srv}
				if _, _, err := h.FromHandle(h.ToHandle(x, pathElems(c))); err != nil {
					t.Fatal(err)
				}
				if fi.IsDir() {
					walk(c)
				}
			}
		}
		walk("/")
		return n
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var first *inoIndex
	var h1 uint64
	for i := 0; i < 20; i++ {
		name := "n" + itoa3(i)
		e.nodes.set(Node{Name: name, ImageRoot: img}, "")
		x := e.export("/nodes/" + name)
		if n := walkAll(x); n != 2000+40+2 {
			t.Fatalf("walked %d", n)
		}
		idx := x.t.layers[len(x.t.layers)-1].index
		if first == nil {
			first = idx
		} else if idx != first {
			t.Fatal("a second image index")
		}
		if i == 0 {
			h1 = heap()
		}
	}
	perNode := (int64(heap()) - int64(h1)) / 19
	for _, x := range e.srv.exports {
		t.Logf("%s: %d paths %d stacks", x.name, len(x.cache.paths), len(x.cache.stacks))
		break
	}
	t.Logf("heap after 1 node %d KiB, per further node %d KiB (2042 files each)", h1/1024, perNode/1024)
	// caches hold ~2k paths per node: a few hundred KiB; a copy of the
	// image's metadata per node would show as much more.
	if perNode > 2<<20 {
		t.Fatalf("each node costs %d bytes", perNode)
	}
}

func itoa3(i int) string {
	return string([]byte{byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10)})
}
