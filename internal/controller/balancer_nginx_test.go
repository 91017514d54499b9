package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/internal/agent"
	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/store"
	"github.com/pictl/pictl/internal/testnet"

	"github.com/pictl/pictl/internal/testnginx"
)

// inNetnsEnv marks the test binary re-run inside the test's namespace.
const inNetnsEnv = "PICTL_TEST_IN_NETNS"

// runInNetns re-runs the calling test inside a new namespace (so every
// socket the controller and the balancer open, listening or dialling, is
// there), after setup has prepared the namespace. It returns true in the
// child, which then runs the test's body.
func runInNetns(t *testing.T, setup func(ns *testnet.NS)) bool {
	t.Helper()
	if os.Getenv(inNetnsEnv) == t.Name() {
		return true
	}
	ns := testnet.New(t, "lbc")
	setup(ns)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-test.run=^" + t.Name() + "$", "-test.v", "-test.count=1"}
	cmd := ns.Command(context.Background(), exe, args...)
	cmd.Env = append(os.Environ(), inNetnsEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("in netns %s: %v", ns.Name, err)
	}
	return false
}

// startNodeNginx runs a real nginx as node name's web server on addr:8000
// (the web role's balancer port), serving a page that names the node.
func startNodeNginx(t *testing.T, name, addr string) *exec.Cmd {
	t.Helper()
	return testnginx.Start(t, addr+":8000", "node "+name+"\n")
}

const lbClusterYAML = `controller: {interface: lo, address: 10.77.0.1/24, state_dir: STATE}
dhcp: {mode: off}
ports: {balancer: 8080}
nodes:
NODES
balancer:
  check: {path: /index.html, interval: 100ms, rise: 1, fall: 3}
`

// fakeAgents report every node's desired layer active, as the nodes'
// agents do once systemd reached the role's target.
func fakeAgents(ctx context.Context, rl *roleLayers, nodes []string) {
	for _, n := range nodes {
		go func() {
			for ctx.Err() == nil {
				d, changed, ok := rl.Desired(n)
				if !ok {
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				rl.Report(n, agent.Report{Layer: d.Layer, Role: d.Role, Target: d.Target, State: api.RoleActive})
				select {
				case <-ctx.Done():
				case <-changed:
				}
			}
		}()
	}
}

// The balancer wired into a real controller, in front of real nginx
// members, in a namespace of its own: while GETs run without pause, a node
// joins the web role, one leaves it for db (drained first), one is removed
// from cluster.yaml and one is killed with SIGKILL — no GET fails.
func TestBalancerControllerWithNginx(t *testing.T) {
	addrs := map[string]string{"a": "10.77.0.11", "b": "10.77.0.12", "c": "10.77.0.13", "d": "10.77.0.14"}
	if !runInNetns(t, func(ns *testnet.NS) {
		for _, a := range addrs {
			ns.MustIP("addr", "add", a+"/32", "dev", "lo")
		}
	}) {
		return
	}
	nginx := map[string]*exec.Cmd{}
	for n, a := range addrs {
		nginx[n] = startNodeNginx(t, n, a)
	}

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	path := filepath.Join(dir, "cluster.yaml")
	nodesYAML := func(roles map[string]string) string {
		var b strings.Builder
		for i, n := range []string{"a", "b", "c", "d"} {
			if r, ok := roles[n]; ok {
				fmt.Fprintf(&b, "  %s: {mac: 52:54:00:00:00:%02x, arch: amd64, role: %s}\n", n, i+1, r)
			}
		}
		return b.String()
	}
	write := func(roles map[string]string) {
		data := strings.NewReplacer("STATE", state, "NODES", nodesYAML(roles)).Replace(lbClusterYAML)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(map[string]string{"a": "web", "b": "web", "c": "none", "d": "web"})
	st := store.New(path)
	// The balancer's own lines (drains, members up and down) tell the
	// story of a failure; the roles component's are noise here.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := New(Config{Store: st, Version: "test", SocketPath: filepath.Join(dir, "api.sock"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	c.roleCatalog = nil // the web role's check is replaced by cluster.yaml's anyway
	rl := newRoleLayers(state, log)
	rl.renderer = func() (roleRenderer, error) { return fakeRenderer{}, nil }
	rl.meta = func(string) *images.Meta { return nil }
	rl.addr = func(n string) netip.Addr { return netip.MustParseAddr(addrs[n]) }
	rl.drainers = func() []Drainer { return componentsAs[Drainer](c) }
	rl.agentURL = agentURL
	rl.secret = []byte("s")
	self, _ := os.Executable() // stands in for the agent binary in the layers
	rl.binaries = agentBinaries{self: self, selfArch: "amd64"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := rl.Reload(ctx, c.Cluster()); err != nil {
		t.Fatal(err)
	}
	c.Register(rl)
	bc := newBalancerComponent(c)
	c.Register(bc)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	fakeAgents(ctx, rl, []string{"a", "b", "c", "d"})

	states := func() map[string]string {
		out := map[string]string{}
		for _, m := range bc.Balancer().Members {
			out[m.Node] = m.State
		}
		return out
	}
	waitUntil(t, "a, b, d up", func() bool {
		s := states()
		return s["a"] == "up" && s["b"] == "up" && s["d"] == "up"
	})
	load := startGets(func() string { return "http://127.0.0.1:8080/index.html" }, 8)
	load.waitMore(t, "GETs", 300)

	var mu sync.Mutex
	steps := []struct {
		what  string
		roles map[string]string
		done  func(s map[string]string) bool
	}{
		{"c joins web", map[string]string{"a": "web", "b": "web", "c": "web", "d": "web"},
			func(s map[string]string) bool { return s["c"] == "up" }},
		{"a leaves web for db", map[string]string{"a": "db", "b": "web", "c": "web", "d": "web"},
			func(s map[string]string) bool { _, in := s["a"]; return !in }},
		{"b removed from cluster.yaml", map[string]string{"a": "db", "c": "web", "d": "web"},
			func(s map[string]string) bool { _, in := s["b"]; return !in }},
	}
	for _, s := range steps {
		mu.Lock()
		write(s.roles)
		mu.Unlock()
		waitUntil(t, s.what, func() bool { return s.done(states()) })
		load.waitMore(t, "GETs after "+s.what, 300)
		t.Logf("%s: members %v", s.what, states())
	}
	// kill -9 of d's nginx under load.
	if err := nginx["d"].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "d down", func() bool { return states()["d"] == "down" })
	load.waitMore(t, "GETs after d died", 300)
	load.check(t)

	// What the person sees: GET /v1/balancer on the API socket.
	cl := api.NewClient(filepath.Join(dir, "api.sock"))
	got, err := cl.Balancer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, m := range got.Members {
		rows = append(rows, fmt.Sprintf("%s %s %s req=%d", m.Node, m.Address, m.State, m.Requests))
	}
	t.Logf("GET /v1/balancer: listen %s, %s, %s; %s", got.Listen, got.Policy, got.Check, strings.Join(rows, "; "))
	if got.Role != "web" || len(got.Members) != 2 {
		t.Errorf("GET /v1/balancer: %+v", got)
	}
	// The series per member and code on the controller's registry.
	metrics, err := c.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range metrics {
		if mf.GetName() == "pictl_balancer_requests_total" {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["member"] == "c" && labels["code"] == "200" && m.GetCounter().GetValue() > 0 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Error("no pictl_balancer_requests_total{member=c,code=200} on the controller's registry")
	}
}
