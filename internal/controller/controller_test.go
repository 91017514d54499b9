package controller

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/store"
	"github.com/pictl/pictl/tftpd"
)

func newTestController(t *testing.T) (*Controller, *store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	data, err := cluster.InitTemplate(cluster.InitOptions{
		Interfaces: []string{"br0"}, Address: "10.99.0.1/24", DHCPMode: "full",
		StateDir: filepath.Join(dir, "state"),
	})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(filepath.Join(dir, "cluster.yaml"))
	if err := st.Create(data); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "api.sock")
	c, err := New(Config{Store: st, Version: "test", SocketPath: socket})
	if err != nil {
		t.Fatal(err)
	}
	return c, st, socket
}

// fakeComponent records that it ran and answers node facts.
type fakeComponent struct {
	ran     chan struct{}
	reloads chan int
}

func (f *fakeComponent) Name() string { return "fake" }
func (f *fakeComponent) Run(ctx context.Context) error {
	close(f.ran)
	<-ctx.Done()
	return nil
}
func (f *fakeComponent) Reload(_ context.Context, c *cluster.Cluster) error {
	f.reloads <- len(c.Nodes)
	return nil
}
func (f *fakeComponent) NodeFacts(_ context.Context, name string, _ *cluster.Node, into *api.NodeRuntime) {
	into.BootStage = "kernel:" + name
}

// Under systemd the controller says READY=1 once its components run, pings
// the watchdog, reloads on SIGHUP and tells components about new state.
func TestNotifyWatchdogHangup(t *testing.T) {
	c, st, socket := newTestController(t)
	notify := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", notify)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")

	fc := &fakeComponent{ran: make(chan struct{}), reloads: make(chan int, 4)}
	c.Register(fc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	seen := map[string]bool{}
	buf := make([]byte, 4096)
	for !(seen["READY=1"] && seen["WATCHDOG=1"]) {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for READY=1 and WATCHDOG=1 (got %v): %v", seen, err)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			seen[line] = true
		}
	}
	<-fc.ran

	if _, err := st.Update(func(d *cluster.Document) error {
		return d.Set(map[string]any{"mac": "dc:a6:32:01:36:c2"}, "nodes", "pi3")
	}); err != nil {
		t.Fatal(err)
	}
	if n := <-fc.reloads; n != 1 {
		t.Errorf("component saw %d nodes after the edit, want 1", n)
	}
	gen := c.Status(ctx).Generation
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	select {
	case <-fc.reloads:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after SIGHUP")
	}
	if g := c.Status(ctx).Generation; g != gen+1 {
		t.Errorf("generation after SIGHUP = %d, want %d", g, gen+1)
	}

	nodes, err := api.NewClient(socket).Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Runtime.BootStage != "kernel:pi3" {
		t.Errorf("nodes through the API: %+v, %v", nodes, err)
	}
	st2 := c.Status(ctx)
	if len(st2.Components) != 2 || st2.Components[0].State != "running" || st2.Components[1].Name != "api" || st2.Components[1].State != "running" {
		t.Errorf("components: %+v", st2.Components)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("API socket left behind after stop: %v", err)
	}
}

// A second controller on the same state refuses to start instead of
// sharing the runtime database.
func TestSecondControllerRefused(t *testing.T) {
	c, st, _ := newTestController(t)
	defer c.db.Close()
	_, err := New(Config{Store: st})
	if err == nil || !strings.Contains(err.Error(), "another controller") {
		t.Fatalf("second controller: %v", err)
	}
}

// cluster.yaml is checked against tftpd's steering limit without the
// cluster package importing a server: the two constants must agree.
func TestWindowClientLimitsAgree(t *testing.T) {
	if cluster.MaxWindowClients != tftpd.MaxWindowClients {
		t.Fatalf("cluster.MaxWindowClients = %d, tftpd.MaxWindowClients = %d", cluster.MaxWindowClients, tftpd.MaxWindowClients)
	}
}
