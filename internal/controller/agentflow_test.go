package controller

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/internal/agent"
	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

// nodeSystemd plays a node's systemd for the agent: it reads the unit
// files of the root it is given, as systemd does after daemon-reload, so
// the target the agent isolates must exist in the layer the controller
// rendered.
type nodeSystemd struct {
	root string

	mu      sync.Mutex
	loaded  map[string]bool // unit files seen at the last reload
	active  string
	failing map[string]bool
	calls   []string
}

func (s *nodeSystemd) Reload(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "reload")
	s.loaded = map[string]bool{}
	ents, _ := os.ReadDir(filepath.Join(s.root, "etc/systemd/system"))
	for _, e := range ents {
		s.loaded[e.Name()] = true
	}
	return nil
}

func (s *nodeSystemd) Isolate(_ context.Context, target string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "isolate "+target)
	if !s.loaded[target] && target != "multi-user.target" {
		return "failed", nil
	}
	s.active = target
	return "done", nil
}

func (s *nodeSystemd) Units(_ context.Context, target string) ([]agent.UnitState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := "inactive"
	if s.active == target {
		state = "active"
	}
	out := []agent.UnitState{{Name: target, Active: state}}
	// The units the role's target wants: its drop-ins name them.
	ents, _ := os.ReadDir(filepath.Join(s.root, "etc/systemd/system"))
	for _, e := range ents {
		if u, ok := strings.CutSuffix(e.Name(), ".d"); ok && state == "active" {
			st := "active"
			if s.failing[u] {
				st = "failed"
			}
			out = append(out, agent.UnitState{Name: u, Active: st})
		}
	}
	return out, nil
}

func (s *nodeSystemd) StopMasked(context.Context) ([]string, error) { return nil, nil }

func (s *nodeSystemd) Stop(_ context.Context, units []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "stop "+strings.Join(units, " "))
	return units, nil
}

func (s *nodeSystemd) Refresh(_ context.Context, target string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "refresh "+target)
	return nil, nil
}

func (s *nodeSystemd) Jobs(context.Context) (int, error) { return 0, nil }

func (s *nodeSystemd) Reboot(context.Context) error { return nil }

const flowYAML = `
controller: {interface: br0, address: 10.99.0.1/24, state_dir: STATE}
images:
  deb: {arch: amd64, default: true}
nodes:
  node1: {mac: 52:54:00:00:00:01, ip: 10.99.0.11, role: ROLE}
volumes:
  www: {readonly: true}
`

// The whole role path without a kernel: the real role catalog renders
// node1's layer, the agent (fake systemd, the layer as its root, as NFS
// would show it) long-polls the real listener over HTTP, switches and
// reports; the controller's row and the web membership follow.
func TestRoleSwitchThroughAgent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := t.TempDir()
	load := func(role string) *cluster.Cluster {
		cl, err := cluster.Load("cluster.yaml", []byte(strings.NewReplacer("STATE", state, "ROLE", role).Replace(flowYAML)))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	self, _ := os.Executable()
	rl := newRoleLayers(state, slog.New(slog.DiscardHandler))
	rl.renderer = func() (roleRenderer, error) { return loadRoleCatalog("") }
	pkgs := map[string]string{"nginx-light": "1", "systemd": "1"}
	rl.meta = func(string) *images.Meta { return &images.Meta{Arch: "amd64", Packages: pkgs} }
	rl.addr = func(string) netip.Addr { return netip.MustParseAddr("10.99.0.11") }
	rl.agentURL = agentURL
	rl.secret = []byte("s")
	rl.binaries = agentBinaries{self: self, selfArch: "amd64"}
	if err := rl.Reload(ctx, load("web")); err != nil {
		t.Fatal(err)
	}
	web := layerDir(rl, "node1")
	for _, f := range []string{"etc/systemd/system/pictl-role-web.target", "etc/systemd/system/nginx.service.d", agentBinaryPath, agent.LayerIDFile, "etc/pictl/agent.env"} {
		if _, err := os.Lstat(filepath.Join(web, f)); err != nil {
			t.Errorf("web layer: %v", err)
		}
	}
	env, _ := os.ReadFile(filepath.Join(web, "etc/pictl/agent.env"))
	if !strings.Contains(string(env), agent.NodeToken([]byte("s"), "node1")) || !strings.Contains(string(env), "http://10.99.0.1:4390") {
		t.Errorf("agent.env: %s", env)
	}

	srv := httptest.NewServer((&agent.Listener{Secret: []byte("s"), Coordinator: rl}).Handler())
	defer srv.Close()
	// The node's root: a symlink the test points at the current layer,
	// as nfsd swaps the layer under the node's mount.
	root := filepath.Join(t.TempDir(), "root")
	point := func(layer string) {
		os.Remove(root)
		if err := os.Symlink(layer, root); err != nil {
			t.Fatal(err)
		}
	}
	point(web)
	// node1 booted into web: default.target points at it.
	if dt, err := os.Readlink(filepath.Join(web, "etc/systemd/system/default.target")); err != nil || filepath.Base(dt) != "pictl-role-web.target" {
		t.Fatalf("default.target → %q, %v", dt, err)
	}
	sd := &nodeSystemd{root: root, active: "pictl-role-web.target", failing: map[string]bool{"mariadb.service": true}}
	a := &agent.Agent{
		Client:  &agent.Client{URL: srv.URL, Node: "node1", Token: agent.NodeToken([]byte("s"), "node1")},
		Systemd: sd, Root: root, Tick: time.Millisecond, Retry: time.Millisecond,
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitRow := func(want string) *api.RoleStatus {
		t.Helper()
		for {
			var row api.NodeRuntime
			rl.NodeFacts(ctx, "node1", nil, &row)
			if row.Role.Summary() == want {
				return row.Role
			}
			select {
			case <-rl.Changes():
			case <-time.After(30 * time.Second):
				t.Fatalf("row %q, want %q", row.Role.Summary(), want)
			}
		}
	}
	waitRow("web active")
	if m := rl.Members("web"); len(m) != 1 || m[0].State != api.RoleActive || m[0].Port != 8000 {
		t.Errorf("web members: %+v", m)
	}

	// db without mariadb in the image: refused, node1 stays web.
	if err := rl.Reload(ctx, load("db")); err != nil {
		t.Fatal(err)
	}
	var row api.NodeRuntime
	rl.NodeFacts(ctx, "node1", nil, &row)
	if !strings.Contains(row.Role.Refused, "pictl image exec deb -- apt-get install -y mariadb-server") || layerDir(rl, "node1") != web {
		t.Fatalf("refusal: %+v", row.Role)
	}

	pkgs["mariadb-server"] = "1"
	if err := rl.Reload(ctx, load("db")); err != nil {
		t.Fatal(err)
	}
	waitRow("db switching")
	point(layerDir(rl, "node1")) // nfsd shows the new layer
	st := waitRow("db failed: mariadb.service")
	if st.Stages["render"] <= 0 || st.Stages["isolate"] <= 0 {
		t.Errorf("stages: %v", st.Stages)
	}
	if m := rl.Members("web"); len(m) != 0 {
		t.Errorf("web members after node1 left: %+v", m)
	}

	if err := rl.Reload(ctx, load("web")); err != nil {
		t.Fatal(err)
	}
	if layerDir(rl, "node1") != web {
		t.Errorf("back to web: a new layer %s, not %s", layerDir(rl, "node1"), web)
	}
	point(web)
	waitRow("web active")
	sd.mu.Lock()
	defer sd.mu.Unlock()
	// The old role stops before systemd reloads (its ExecStop= undo while still loaded).
	want := []string{"stop pictl-role-web.target", "reload", "isolate pictl-role-db.target", "stop pictl-role-db.target", "reload", "isolate pictl-role-web.target"}
	if !slices.Equal(sd.calls, want) {
		t.Errorf("systemd calls %q, want %q", sd.calls, want)
	}
}
