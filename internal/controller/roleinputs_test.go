package controller

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/internal/cluster"
)

const lbRoleClusterYAML = `
controller: {interface: br0, address: 10.99.0.1/24, state_dir: STATE}
dhcp: {range: 10.99.0.100-10.99.0.199}
images:
  deb: {arch: amd64, default: true}
nodes:
  w1: {mac: 02:00:00:00:00:01, role: web}
  w2: {mac: 02:00:00:00:00:02, ip: 10.99.0.12, role: web}
  lb1: {mac: 02:00:00:00:00:03, ip: 10.99.0.21, role: lb}
  lb2: {mac: 02:00:00:00:00:04, ip: 10.99.0.22, role: lb}
volumes:
  www: {readonly: true}
roles:
  lb: {vars: {vip: 10.99.0.50}}
`

// The lb nodes' layers follow the web nodes' addresses: w1 has no
// reservation, so HAProxy learns of it only when it gets an address (a
// lease); that alone — cluster.yaml unchanged — renders the lb nodes
// again with w1 as a server, and leaves the web nodes' layers as they were.
func TestLBLayerFollowsWebAddresses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := t.TempDir()
	cl, err := cluster.Load("cluster.yaml", []byte(strings.ReplaceAll(lbRoleClusterYAML, "STATE", state)))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(state, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "pictl"), []byte("amd64 agent"), 0o755)

	var mu sync.Mutex
	leases := map[string]netip.Addr{}
	rl := newRoleLayers(state, slog.New(slog.DiscardHandler))
	rl.renderer = func() (roleRenderer, error) { return loadRoleCatalog("") }
	rl.meta = func(string) *images.Meta { return &images.Meta{Arch: "amd64"} }
	rl.addr = func(name string) netip.Addr {
		mu.Lock()
		defer mu.Unlock()
		if a, ok := leases[name]; ok {
			return a
		}
		return cl.Nodes[name].IP
	}
	rl.agentURL = func(*cluster.Cluster) string { return "http://10.99.0.1:4390" }
	rl.secret = []byte("secret")
	rl.binaries = agentBinaries{self: filepath.Join(bin, "pictl"), selfArch: "amd64"}
	rl.cluster = func() *cluster.Cluster { return cl }
	rl.addressPoll = 10 * time.Millisecond
	if err := rl.Reload(ctx, cl); err != nil {
		t.Fatal(err)
	}
	haproxy := func(node string) string {
		b, err := os.ReadFile(filepath.Join(layerDir(rl, node), "etc/haproxy/haproxy.cfg"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if cfg := haproxy("lb1"); strings.Contains(cfg, "server w1 ") || !strings.Contains(cfg, "server w2 10.99.0.12:8000 check") {
		t.Fatalf("before w1 has an address, lb1's HAProxy config should list w2 only:\n%s", cfg)
	}
	lb1, changed, _ := rl.Desired("lb1")
	_, changed2, _ := rl.Desired("lb2")
	web := map[string]string{"w1": layerDir(rl, "w1"), "w2": layerDir(rl, "w2")}

	done := make(chan error, 1)
	go func() { done <- rl.Run(ctx) }()
	mu.Lock()
	leases["w1"] = netip.MustParseAddr("10.99.0.111")
	mu.Unlock()
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("lb1's layer did not change after w1 got an address")
	}
	select {
	case <-changed2:
	case <-time.After(30 * time.Second):
		t.Fatal("lb2's layer did not change after w1 got an address")
	}
	now, _, _ := rl.Desired("lb1")
	if now.Layer == lb1.Layer || now.Role != "lb" {
		t.Fatalf("lb1 desired %+v, was %+v", now, lb1)
	}
	for _, node := range []string{"lb1", "lb2"} {
		if cfg := haproxy(node); !strings.Contains(cfg, "server w1 10.99.0.111:8000 check") {
			t.Errorf("%s's HAProxy config lacks w1 after its lease:\n%s", node, cfg)
		}
	}
	for n, was := range web {
		if got := layerDir(rl, n); got != was {
			t.Errorf("%s's layer changed (%s → %s); nothing of its tree depends on w1's address", n, was, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
