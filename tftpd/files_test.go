package tftpd

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const secret = "SECRET-OUTSIDE-THE-BOOT-ROOT"

// confinementTree builds <tmp>/boot (the served root) next to <tmp>/secret
// with every kind of trap a boot directory could hold.
func confinementTree(t testing.TB) string {
	t.Helper()
	tmp := t.TempDir()
	boot := filepath.Join(tmp, "boot")
	writeFile(t, filepath.Join(tmp, "secret"), []byte(secret))
	writeFile(t, filepath.Join(boot, "start4.elf"), []byte("firmware"))
	writeFile(t, filepath.Join(boot, "overlays", "a.dtbo"), []byte("overlay"))
	for link, target := range map[string]string{
		"inside":             "start4.elf",
		"overlays/up-inside": "../start4.elf",
		"abs-escape":         "/etc/passwd",
		"abs-secret":         filepath.Join(tmp, "secret"),
		"rel-escape":         "../secret",
		"dir-escape":         "..",
		"loop":               "loop",
		"dangling":           "nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(boot, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(boot, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return boot
}

func TestConfinement(t *testing.T) {
	boot := confinementTree(t)
	nodes := &fakeNodes{
		nodes: []Node{{Name: "n1", Serial: "0a1b2c3d", Netboot: true, Image: Image{Kind: ImagePi, BootDir: boot}}},
		ips:   map[netip.Addr]string{netip.MustParseAddr("10.0.0.1"): "n1"},
	}
	files := bootFiles{cache: newContentCache(1<<20, 1<<20)}
	tests := []struct {
		name string
		want string // content, or "notfound" / "denied"
	}{
		{"start4.elf", "firmware"},
		{"0a1b2c3d/start4.elf", "firmware"},
		{"inside", "firmware"},
		{"overlays/up-inside", "firmware"},
		{"0a1b2c3d/overlays/a.dtbo", "overlay"},
		{"missing.bin", "notfound"},
		{"overlays", "notfound"},          // a directory
		{"start4.elf/x", "notfound"},      // a file used as a directory
		{"dangling", "notfound"},          // symlink to nothing
		{"fifo", "notfound"},              // not a regular file, and must not block
		{"abs-escape", "denied"},          // absolute symlink
		{"abs-secret", "denied"},          // absolute symlink to the secret
		{"rel-escape", "denied"},          // ../secret
		{"dir-escape/secret", "denied"},   // directory symlink to the parent
		{"0a1b2c3d/rel-escape", "denied"}, // same through a prefix
		{"loop", "denied"},                // symlink loop
		{"../secret", "denied"},           // refused by CleanName
		{"0a1b2c3d/../../secret", "denied"},
		{"/etc/passwd", "denied"},
		{"secret\x00", "denied"},
	}
	for _, tt := range tests {
		got, err := resolveAndRead(nodes, files, tt.name, "10.0.0.1")
		switch tt.want {
		case "notfound":
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%q: got %q, %v; want not found", tt.name, got, err)
			}
		case "denied":
			var ne *NameError
			if !errors.Is(err, ErrDenied) && !errors.As(err, &ne) {
				t.Errorf("%q: got %q, %v; want denied", tt.name, got, err)
			}
		default:
			if err != nil || got != tt.want {
				t.Errorf("%q: got %q, %v; want %q", tt.name, got, err, tt.want)
			}
		}
		if err != nil && strings.Contains(clientMessage(outcomeOfOpen(err)), "/") {
			t.Errorf("%q: client message %q has a path", tt.name, clientMessage(outcomeOfOpen(err)))
		}
	}
}

// resolveAndRead is the server's name path without the network: clean,
// route, open, read.
func resolveAndRead(nodes Nodes, files bootFiles, name, client string) (string, error) {
	clean, err := CleanName(name)
	if err != nil {
		return "", err
	}
	tgt, err := resolveWith(DefaultRoutes(nodes, nil), Request{Name: clean, Client: netip.MustParseAddr(client)})
	if err != nil {
		return "", err
	}
	c, err := files.open(tgt, nfsTarget{Server: netip.MustParseAddr("10.0.0.254"), Port: 2049, Export: "/nodes/n1"})
	if err != nil {
		return "", err
	}
	defer c.close()
	data, err := io.ReadAll(c.r)
	if int64(len(data)) != c.size {
		return "", errors.New("size mismatch")
	}
	return string(data), err
}

// FuzzResolveName: whatever name a client sends, nothing outside the boot
// root is ever served.
func FuzzResolveName(f *testing.F) {
	for _, s := range []string{
		"start4.elf", "0a1b2c3d/start4.elf", "rel-escape", "dir-escape/secret", "abs-secret",
		"../secret", "0a1b2c3d/../secret", "inside", "overlays/up-inside", "dc-a6-32-01-36-c2/dir-escape/secret",
		"./dir-escape/./secret", "dir-escape//secret", "cmdline.txt", "0a1b2c3d/config.txt",
	} {
		f.Add(s)
	}
	boot := confinementTree(f)
	nodes := &fakeNodes{
		nodes: []Node{{Name: "n1", Serial: "0a1b2c3d", MAC: mustMAC("dc:a6:32:01:36:c2"), Netboot: true,
			Image: Image{Kind: ImagePi, BootDir: boot}}},
		ips: map[netip.Addr]string{netip.MustParseAddr("10.0.0.1"): "n1"},
	}
	files := bootFiles{cache: newContentCache(1<<20, 1<<20)}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := resolveAndRead(nodes, files, name, "10.0.0.1")
		if err == nil && strings.Contains(got, secret) {
			t.Fatalf("%q served the secret outside the root", name)
		}
		if err != nil && errors.Is(err, ErrDenied) && bytes.Contains([]byte(clientMessage(outcomeOfOpen(err))), []byte(boot)) {
			t.Fatalf("%q: client message leaks the root", name)
		}
	})
}

func TestNetbootOffServesNothing(t *testing.T) {
	dir, _ := makePiImage(t, "arm_64bit=1\n")
	n := Node{Name: "off", Serial: "0a1b2c3d", Netboot: false, Image: Image{Kind: ImagePi, BootDir: dir}}
	files := bootFiles{}
	for _, p := range []string{"start.elf", "start4.elf", "config.txt", "cmdline.txt", "bootcode.bin"} {
		if _, err := files.open(Target{Node: n, Path: p}, goldenNFS); !errors.Is(err, ErrNetbootOff) {
			t.Errorf("%s: %v; want netboot off", p, err)
		}
	}
	if got := clientMessage(OutcomeNetbootOff); got != "file not found" {
		t.Errorf("client sees %q", got)
	}
}

func TestContentCache(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	writeFile(t, p, []byte("version one"))
	c := newContentCache(100, 50)
	read := func() string {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		data, ok, err := c.contents(f, st)
		if err != nil || !ok {
			t.Fatalf("contents: %v %v", ok, err)
		}
		return string(data)
	}
	if got := read(); got != "version one" {
		t.Fatalf("got %q", got)
	}
	// Replaced by a new file (new inode): never the stale content.
	writeFile(t, p+".new", []byte("version two, longer"))
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "version two, longer" {
		t.Fatalf("after replace got %q", got)
	}
	// Eviction keeps the total under the budget.
	for i := range 10 {
		q := filepath.Join(dir, "f"+string(rune('a'+i)))
		writeFile(t, q, bytes.Repeat([]byte{'x'}, 40))
		f, _ := os.Open(q)
		st, _ := f.Stat()
		if _, _, err := c.contents(f, st); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if c.size() > 100 {
		t.Errorf("cache holds %d bytes, budget 100", c.size())
	}
	// Too big for one entry: not cached, read directly.
	big := filepath.Join(dir, "big")
	writeFile(t, big, bytes.Repeat([]byte{'y'}, 60))
	f, _ := os.Open(big)
	defer f.Close()
	st, _ := f.Stat()
	if _, ok, _ := c.contents(f, st); ok {
		t.Error("file over the per-file limit was cached")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) {
	return 0, &os.PathError{Op: "read", Path: "/var/lib/pictl/images/x/boot/kernel8.img", Err: syscall.EIO}
}

// The library sends a reader's error text to the client; a file error names
// a host path, so the reader the library sees never returns one.
func TestReadErrorsAreSanitised(t *testing.T) {
	cr := &countingReader{r: failingReader{}}
	_, err := cr.Read(make([]byte, 512))
	if err == nil || strings.Contains(err.Error(), "/") {
		t.Fatalf("error reaching the library: %v", err)
	}
	if !errors.Is(cr.err, syscall.EIO) {
		t.Errorf("original error not kept for the log: %v", cr.err)
	}
}
