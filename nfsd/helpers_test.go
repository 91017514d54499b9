package nfsd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nfsd layers need root (whiteouts are device nodes, identity is a trusted xattr)")
	}
}

// fakeNodes is a hand-written Nodes + Volumes.
type fakeNodes struct {
	mu      sync.Mutex
	nodes   map[string]Node
	addrs   map[netip.Addr]string
	volumes map[string]Volume
}

func newFakeNodes() *fakeNodes {
	return &fakeNodes{nodes: map[string]Node{}, addrs: map[netip.Addr]string{}, volumes: map[string]Volume{}}
}

func (f *fakeNodes) ByAddr(a netip.Addr) (Node, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[f.addrs[a]]
	return n, ok
}

func (f *fakeNodes) ByName(name string) (Node, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[name]
	return n, ok
}

func (f *fakeNodes) Volume(name string) (Volume, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.volumes[name]
	return v, ok
}

func (f *fakeNodes) set(n Node, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.Name] = n
	if addr != "" {
		f.addrs[netip.MustParseAddr(addr)] = n.Name
	}
}

// tcpAddr is a client address of the node (port 700).
func (f *fakeNodes) tcpAddr(name string) *net.TCPAddr {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, n := range f.addrs {
		if n == name {
			return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 700))
		}
	}
	return nil
}

func (f *fakeNodes) setVolume(v Volume) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.volumes[v.Name] = v
}

// env is one controller state directory + runtime database, on which
// servers can be started and restarted.
type env struct {
	t     testing.TB
	state string
	db    *bbolt.DB
	nodes *fakeNodes
	srv   *Server
	stop  func()
	cfg   Config
}

func newEnv(t testing.TB) *env {
	t.Helper()
	requireRoot(t)
	state := t.TempDir()
	db, err := bbolt.Open(filepath.Join(state, "runtime.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, state: state, db: db, nodes: newFakeNodes()}
	e.cfg = Config{Addr: "127.0.0.1:0", StateDir: state}
	e.newServer()
	return e
}

func (e *env) newServer() *Server {
	e.t.Helper()
	s, err := New(e.cfg, e.nodes, e.nodes, e.db, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = s
	return s
}

// serve starts the current server on loopback and returns its address.
func (e *env) serve() string {
	e.t.Helper()
	if err := e.srv.Listen(); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx) }()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("serve: %v", err)
		}
	}
	e.t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
			e.stop = nil
		}
	})
	return e.srv.Addr().String()
}

// restart stops the server (if serving), makes a new one on the same state
// and database, as a controller restart does, and serves it on addr if
// given.
func (e *env) restart(addr string) string {
	e.t.Helper()
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	e.newServer()
	if addr == "" {
		return ""
	}
	e.cfg.Addr = addr
	e.srv.cfg.Addr = addr
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger briefly
		if err = e.srv.Listen(); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx) }()
	e.stop = func() {
		cancel()
		<-done
	}
	return addr
}

func (e *env) export(path string) *export {
	e.t.Helper()
	x, err := e.srv.exportFor(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

// Image building.

type imgFile struct {
	path    string
	mode    uint32 // with type bits
	content string // or symlink target
	uid     int
	gid     int
	rdev    uint64
	link    string // hard link to this path
}

func buildTree(t testing.TB, root string, files []imgFile) {
	t.Helper()
	for _, f := range files {
		host := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case f.link != "":
			err = os.Link(filepath.Join(root, f.link), host)
		case f.mode&unix.S_IFMT == unix.S_IFDIR:
			err = os.MkdirAll(host, 0o755)
		case f.mode&unix.S_IFMT == unix.S_IFLNK:
			err = os.Symlink(f.content, host)
		case f.mode&unix.S_IFMT == unix.S_IFREG || f.mode&unix.S_IFMT == 0:
			err = os.WriteFile(host, []byte(f.content), 0o644)
		default:
			err = unix.Mknod(host, f.mode&unix.S_IFMT|0o600, int(f.rdev))
		}
		if err != nil {
			t.Fatalf("build %s: %v", f.path, err)
		}
		if f.link != "" {
			continue
		}
		if err := unix.Lchown(host, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
		if f.mode&unix.S_IFMT != unix.S_IFLNK && f.mode&0o7777 != 0 {
			if err := unix.Chmod(host, f.mode&0o7777); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A small Debian-like image.
var testImage = []imgFile{
	{path: "bin", mode: unix.S_IFLNK, content: "usr/bin"},
	{path: "usr/bin/busybox", mode: unix.S_IFREG | 0o755, content: "#!busybox\n"},
	{path: "usr/bin/sh", mode: unix.S_IFLNK, content: "busybox"},
	{path: "usr/bin/true", mode: unix.S_IFLNK, content: "/usr/bin/busybox"},
	{path: "usr/bin/sudo", mode: unix.S_IFREG | 0o4755, content: "sudo"},
	{path: "usr/bin/wall", mode: unix.S_IFREG | 0o2755, content: "wall", gid: 5},
	{path: "usr/bin/vi", mode: unix.S_IFREG | 0o755, content: "vi-binary"},
	{path: "usr/bin/view", link: "usr/bin/vi"},
	{path: "etc/hostname", mode: unix.S_IFREG | 0o644, content: "image\n"},
	{path: "etc/passwd", mode: unix.S_IFREG | 0o644, content: "root:x:0:0::/root:/bin/sh\n"},
	{path: "etc/shadow", mode: unix.S_IFREG | 0o640, content: "root:*:1::::::\n", gid: 42},
	{path: "etc/ssh/sshd_config", mode: unix.S_IFREG | 0o644, content: "Port 22\n"},
	{path: "etc/ssh/moduli", mode: unix.S_IFREG | 0o644, content: "moduli\n"},
	{path: "etc/systemd/system/default.target", mode: unix.S_IFLNK, content: "/lib/systemd/system/multi-user.target"},
	{path: "home/user/notes.txt", mode: unix.S_IFREG | 0o600, content: "user notes\n", uid: 1000, gid: 1000},
	{path: "tmp", mode: unix.S_IFDIR | 0o1777},
	{path: "dev/null", mode: unix.S_IFCHR | 0o666, rdev: unix.Mkdev(1, 3)},
	{path: "dev/sda", mode: unix.S_IFBLK | 0o660, rdev: unix.Mkdev(8, 0), gid: 6},
	{path: "run/initctl", mode: unix.S_IFIFO | 0o600},
	{path: "var/lib/dpkg/status", mode: unix.S_IFREG | 0o644, content: "Package: busybox\n"},
}

func newImage(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "image")
	buildTree(t, root, testImage)
	if err := unix.Lsetxattr(filepath.Join(root, "usr/bin/vi"), "user.pictl.test", []byte("kept"), 0); err != nil {
		t.Logf("no user xattrs on test fs: %v", err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	_ = os.Chtimes(filepath.Join(root, "etc/hostname"), old, old)
	return root
}

func readAll(t testing.TB, x *export, p string) string {
	t.Helper()
	f, err := x.Open(p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func writeFile(t testing.TB, x *export, p, content string, flag int) {
	t.Helper()
	f, err := x.OpenFile(p, flag, 0o644)
	if err != nil {
		t.Fatalf("open %s for write: %v", p, err)
	}
	if flag&os.O_APPEND != 0 {
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func isNotExist(err error) bool { return notExist(err) }

var _ = errors.Is
