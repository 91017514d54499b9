package vm

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"
	nfshelper "github.com/willscott/go-nfs/helpers"
	"golang.org/x/sys/unix"
)

// serveGoNFS is the stand-in NFS server of the harness's own tests: go-nfs
// exporting root on host:2049 inside the test network (the recipe's osnfs,
// with a handle cache large enough for a whole rootfs). It returns a
// function that stops it.
func serveGoNFS(t testing.TB, n *Net, root string) (stop func()) {
	t.Helper()
	nfs.Log.SetLevel(nfs.ErrorLevel)
	h := nfshelper.NewCachingHandler(nfshelper.NewNullAuthHandler(changeOS{osfs.New(root)}), 1<<20)
	var l net.Listener
	if err := n.NS.Do(func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(n.Host().String(), "2049"))
		return err
	}); err != nil {
		t.Fatalf("stand-in nfs: %v", err)
	}
	tl := &trackingListener{Listener: l}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := nfs.Serve(tl, h); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("stand-in nfs: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			tl.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// trackingListener closes the accepted connections too when closed, as a
// server process that exits would: go-nfs's Serve leaves them running.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	return err
}

// changeOS adds billy.Change and go-nfs's UnixChange to a billy osfs (as
// go-nfs's example/osnfs does), so chmod, mkfifo and mknod work.
type changeOS struct{ billy.Filesystem }

func (fs changeOS) path(name string) string { return filepath.Join(fs.Root(), name) }

func (fs changeOS) Chmod(name string, mode os.FileMode) error { return os.Chmod(fs.path(name), mode) }
func (fs changeOS) Lchown(name string, uid, gid int) error    { return os.Lchown(fs.path(name), uid, gid) }
func (fs changeOS) Chown(name string, uid, gid int) error     { return os.Chown(fs.path(name), uid, gid) }
func (fs changeOS) Chtimes(name string, atime, mtime time.Time) error {
	return os.Chtimes(fs.path(name), atime, mtime)
}
func (fs changeOS) Mknod(name string, mode, major, minor uint32) error {
	return unix.Mknod(fs.path(name), mode, int(unix.Mkdev(major, minor)))
}
func (fs changeOS) Mkfifo(name string, mode uint32) error { return unix.Mkfifo(fs.path(name), mode) }
func (fs changeOS) Link(name, link string) error          { return unix.Link(fs.path(name), fs.path(link)) }
func (fs changeOS) Socket(name string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrUnix{Name: fs.path(name)})
}

// rootfsDir builds a rootfs for spec in a fresh directory.
func rootfsDir(t *testing.T, spec RootfsSpec) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := BuildRootfs(root, spec); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}
