package nfsroot

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/test/vm"
)

// cluster is a hand-written nfsd.Nodes + nfsd.Volumes: the nodes of a test.
type cluster struct {
	mu      sync.Mutex
	byName  map[string]nfsd.Node
	byAddr  map[netip.Addr]string
	volumes map[string]nfsd.Volume
}

func newCluster() *cluster {
	return &cluster{byName: map[string]nfsd.Node{}, byAddr: map[netip.Addr]string{}, volumes: map[string]nfsd.Volume{}}
}

func (c *cluster) add(n nfsd.Node, addr netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byName[n.Name] = n
	c.byAddr[addr] = n.Name
}

func (c *cluster) ByAddr(a netip.Addr) (nfsd.Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.byName[c.byAddr[a]]
	return n, ok
}

func (c *cluster) ByName(name string) (nfsd.Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.byName[name]
	return n, ok
}

func (c *cluster) Volume(name string) (nfsd.Volume, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[name]
	return v, ok
}

// controller runs nfsd inside the test network the way `pictl serve`
// would: state directory, runtime database, one TCP port. restart replaces
// the server with a new one on the same state, as a controller restart
// does (the database is closed and reopened too).
type controller struct {
	t       testing.TB
	net     *vm.Net
	cluster *cluster
	state   string
	addr    string
	log     *slog.Logger

	mu     sync.Mutex
	db     *bbolt.DB
	srv    *nfsd.Server
	cancel context.CancelFunc
	done   chan error
	starts int
}

func startController(t testing.TB, n *vm.Net, c *cluster) *controller {
	t.Helper()
	ctl := &controller{
		t: t, net: n, cluster: c,
		state: filepath.Join(t.TempDir(), "state"),
		addr:  net.JoinHostPort(n.Host().String(), "2049"),
		log:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if err := os.MkdirAll(ctl.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ctl.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctl.stop() })
	return ctl
}

func (c *controller) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	db, err := bbolt.Open(filepath.Join(c.state, "runtime.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	srv, err := nfsd.New(nfsd.Config{Addr: c.addr, StateDir: c.state}, c.cluster, c.cluster, db, c.log, nil)
	if err != nil {
		db.Close()
		return err
	}
	var lerr error
	for i := 0; i < 100; i++ { // the previous process's socket may linger a moment
		if lerr = c.net.NS.Do(srv.Listen); lerr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lerr != nil {
		db.Close()
		return lerr
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	c.db, c.srv, c.cancel, c.done = db, srv, cancel, done
	c.starts++
	return nil
}

func (c *controller) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	err := <-c.done
	c.db.Close()
	c.cancel = nil
	return err
}

func (c *controller) restart(ctx context.Context) error {
	if err := c.stop(); err != nil {
		return err
	}
	// A real restart leaves a gap; the guest's hard mount retries through it.
	time.Sleep(500 * time.Millisecond)
	return c.start()
}

func (c *controller) server() *nfsd.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
