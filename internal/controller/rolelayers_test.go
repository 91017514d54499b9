package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
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

// fakeRenderer renders a tree naming the node, its role and its token.
type fakeRenderer struct{}

type fakeTree map[string]string

func (t fakeTree) Hash() string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%q=%q\n", k, t[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (t fakeTree) WriteDir(dir string) error {
	for p, data := range t {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (fakeRenderer) Render(in renderInput) (roleTree, error) {
	if in.Node.Role == "broken" {
		return nil, fmt.Errorf("roles/broken/role.yaml:3:5: template: no such var")
	}
	return fakeTree{
		"etc/hostname":        in.Name + "\n",
		"etc/pictl/agent.env": "PICTL_AGENT_URL=" + in.Agent.URL + "\nPICTL_AGENT_TOKEN=" + in.Agent.Token + "\n",
		"etc/role":            in.Node.Role + " " + in.Arch + "\n",
	}, nil
}

func (fakeRenderer) Known(role string) bool {
	return slices.Contains([]string{"web", "db", "broken"}, role)
}

func (fakeRenderer) Packages(role string) [][]string {
	switch role {
	case "web":
		return [][]string{{"nginx-light", "nginx-core"}}
	case "db":
		return [][]string{{"mariadb-server"}}
	}
	return nil
}

func (fakeRenderer) Balancer(role string) (int, bool) { return 8000, role == "web" }
func (fakeRenderer) Target(role string) string {
	if role == "" {
		return "multi-user.target"
	}
	return "pictl-role-" + role + ".target"
}

type fakeDrainer struct {
	mu     sync.Mutex
	drains []string
	// layerAtDrain is the node's desired role when the drain ran.
	seen []string
	rl   *roleLayers
}

func (f *fakeDrainer) Drain(_ context.Context, role, node string, _ netip.Addr) error {
	d, _, _ := f.rl.Desired(node)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drains = append(f.drains, role+" "+node)
	f.seen = append(f.seen, d.Role)
	return nil
}

const roleYAML = `
controller: {interface: br0, address: 10.99.0.1/24, state_dir: STATE}
images:
  deb: {arch: arm64, default: true}
nodes:
  pi3: {mac: dc:a6:32:01:36:c2, ip: 10.99.0.13, role: ROLE}
  pi4: {mac: dc:a6:32:01:36:c4, ip: 10.99.0.14}
roles:
  nosuch: {description: declared but never defined}
  broken: {description: a template error}
`

func roleCluster(t *testing.T, state, role string) *cluster.Cluster {
	t.Helper()
	y := strings.NewReplacer("STATE", state, "ROLE", role).Replace(roleYAML)
	cl, err := cluster.Load("cluster.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func newTestRoleLayers(t *testing.T, state string, pkgs map[string]string) (*roleLayers, *fakeDrainer) {
	t.Helper()
	bin := filepath.Join(state, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "pictl"), []byte("amd64 agent"), 0o755)
	os.WriteFile(filepath.Join(bin, "pictl-linux-arm64"), []byte("arm64 agent"), 0o755)
	rl := newRoleLayers(state, slog.New(slog.DiscardHandler))
	rl.renderer = func() (roleRenderer, error) { return fakeRenderer{}, nil }
	rl.meta = func(string) *images.Meta { return &images.Meta{Arch: "arm64", Packages: pkgs} }
	rl.addr = func(name string) netip.Addr { return netip.MustParseAddr("10.99.0.13") }
	rl.agentURL = func(*cluster.Cluster) string { return "http://10.99.0.1:4390" }
	rl.secret = []byte("secret")
	rl.binaries = agentBinaries{self: filepath.Join(bin, "pictl"), selfArch: "amd64"}
	dr := &fakeDrainer{rl: rl}
	rl.drainers = func() []Drainer { return []Drainer{dr} }
	return rl, dr
}

func layerDirs(t *testing.T, state string) []string {
	ents, _ := os.ReadDir(filepath.Join(state, "roles"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// The life of pi3's role layer: rendered into a content-addressed
// directory with its name and the arm64 agent inside; kept on a no-op
// reload and across a restart; a role the image cannot run is refused
// with the fixing command while the old layer stays; a switch drains the
// node from the balancer first; unused layers go.
func TestRoleLayers(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	pkgs := map[string]string{"nginx-core": "1.22"}
	rl, dr := newTestRoleLayers(t, state, pkgs)

	if err := rl.Reload(ctx, roleCluster(t, state, "web")); err != nil {
		t.Fatal(err)
	}
	web := layerDir(rl, "pi3")
	d, changed, ok := rl.Desired("pi3")
	if !ok || d.Role != "web" || d.Target != "pictl-role-web.target" || filepath.Base(web) != d.Layer {
		t.Fatalf("desired %+v, layer %s", d, web)
	}
	for path, want := range map[string]string{
		agent.LayerIDFile: d.Layer + "\n",
		agentBinaryPath:   "arm64 agent",
		"etc/role":        "web arm64\n",
	} {
		if b, err := os.ReadFile(filepath.Join(web, path)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", path, b, err, want)
		}
	}
	if env, _ := os.ReadFile(filepath.Join(web, "etc/pictl/agent.env")); !strings.Contains(string(env), agent.NodeToken([]byte("secret"), "pi3")) {
		t.Errorf("agent.env without pi3's token: %s", env)
	}
	if layerDir(rl, "pi4") == "" || layerDir(rl, "pi4") == web {
		t.Errorf("pi4 (no role) layer %q", layerDir(rl, "pi4"))
	}
	if m := rl.Members("web"); len(m) != 1 || m[0].Node != "pi3" || m[0].Port != 8000 || m[0].State != api.RoleNotSeen {
		t.Errorf("web members %+v", m)
	}

	// No-op reload, then a restart: same directory, no change announced.
	if err := rl.Reload(ctx, roleCluster(t, state, "web")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("a no-op reload announced a change")
	default:
	}
	rl2, _ := newTestRoleLayers(t, state, pkgs)
	if err := rl2.Reload(ctx, roleCluster(t, state, "web")); err != nil {
		t.Fatal(err)
	}
	if layerDir(rl2, "pi3") != web {
		t.Fatalf("after a restart pi3's layer is %s, was %s", layerDir(rl2, "pi3"), web)
	}

	// The agent reports; the row and the members say so.
	members := rl.Changes()
	rl.Report("pi3", agent.Report{Layer: d.Layer, Role: "web", Target: d.Target, State: agent.StateActive})
	<-members // closed by the report
	var row api.NodeRuntime
	rl.NodeFacts(ctx, "pi3", nil, &row)
	if got := row.Role.Summary(); got != "web active" {
		t.Errorf("row %q, want web active", got)
	}

	// db needs mariadb-server, which the image lacks: refused.
	if err := rl.Reload(ctx, roleCluster(t, state, "db")); err != nil {
		t.Fatal(err)
	}
	rl.NodeFacts(ctx, "pi3", nil, &row)
	wantWhy := "role db needs mariadb-server, which image deb lacks: pictl image exec deb -- apt-get install -y mariadb-server"
	if layerDir(rl, "pi3") != web || row.Role.Refused != wantWhy || row.Role.Summary() != "web active" {
		t.Fatalf("refused db: layer %s, row %+v", layerDir(rl, "pi3"), row.Role)
	}
	if len(dr.drains) != 0 {
		t.Errorf("a refused switch drained the node: %q", dr.drains)
	}
	// The role in force stays web: nfsd keeps serving the node web's
	// volumes.
	if _, role, known := rl.RoleLayer("pi3"); !known || role != "web" {
		t.Errorf("refused db: role in force %q (known %v), want web", role, known)
	}

	// Bad input keeps the layer too.
	for _, role := range []string{"nosuch", "broken"} {
		if err := rl.Reload(ctx, roleCluster(t, state, role)); err != nil {
			t.Fatal(err)
		}
		rl.NodeFacts(ctx, "pi3", nil, &row)
		if layerDir(rl, "pi3") != web || row.Role.Refused == "" {
			t.Errorf("role %s: layer %s, row %+v", role, layerDir(rl, "pi3"), row.Role)
		}
	}

	// With mariadb installed the switch goes through, drained first.
	pkgs["mariadb-server"] = "10.11"
	if err := rl.Reload(ctx, roleCluster(t, state, "db")); err != nil {
		t.Fatal(err)
	}
	<-changed
	if !slices.Equal(dr.drains, []string{"web pi3"}) || !slices.Equal(dr.seen, []string{"web"}) {
		t.Errorf("drains %q while desired was %q; want web pi3 while still web", dr.drains, dr.seen)
	}
	db := layerDir(rl, "pi3")
	rl.NodeFacts(ctx, "pi3", nil, &row)
	if db == web || row.Role.Summary() != "db switching" || row.Role.Refused != "" {
		t.Errorf("after the switch: layer %s, row %q refused %q", db, row.Role.Summary(), row.Role.Refused)
	}
	if m := rl.Members("web"); len(m) != 0 {
		t.Errorf("web members after pi3 left: %+v", m)
	}
	rl.Report("pi3", agent.Report{Layer: filepath.Base(db), Role: "db", State: agent.StateFailed, Failed: "mariadb.service"})
	rl.NodeFacts(ctx, "pi3", nil, &row)
	if got := row.Role.Summary(); got != "db failed: mariadb.service" {
		t.Errorf("row %q", got)
	}

	// Back to web: the web layer is the same directory again; the db
	// layer stays as pi3's previous one, nothing else is left.
	if err := rl.Reload(ctx, roleCluster(t, state, "web")); err != nil {
		t.Fatal(err)
	}
	if layerDir(rl, "pi3") != web {
		t.Errorf("web again: %s, first %s", layerDir(rl, "pi3"), web)
	}
	want := []string{filepath.Base(db), filepath.Base(web), filepath.Base(layerDir(rl, "pi4"))}
	slices.Sort(want)
	if got := layerDirs(t, state); !slices.Equal(got, want) {
		t.Errorf("layers on disk %q, want %q", got, want)
	}
}

// layerDir is a node's role layer directory.
func layerDir(rl *roleLayers, node string) string {
	dir, _, _ := rl.RoleLayer(node)
	return dir
}

// An agent heard from before that has no poll open and stays quiet longer
// than agents ever do is reported lost; a switching agent gets longer.
func TestAgentLiveness(t *testing.T) {
	now := time.Unix(10000, 0)
	tests := []struct {
		name      string
		state     string
		polls     int
		contact   time.Duration // before now; 0 = never heard from
		wantState string
	}{
		{"poll open", api.RoleActive, 1, time.Hour, api.RoleActive},
		{"between polls", api.RoleActive, 0, agentQuiet - time.Second, api.RoleActive},
		{"quiet too long", api.RoleActive, 0, agentQuiet + time.Second, api.RoleLost},
		{"failed and gone", api.RoleFailed, 0, time.Minute, api.RoleLost},
		{"switching", api.RoleSwitching, 0, time.Minute, api.RoleSwitching},
		{"switch never ends", api.RoleSwitching, 0, agentSwitchQuiet + time.Second, api.RoleLost},
		{"never seen", api.RoleNotSeen, 0, 0, api.RoleNotSeen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &nodeRole{polls: tc.polls}
			if tc.contact > 0 {
				e.contact = now.Add(-tc.contact)
			}
			st := &api.RoleStatus{Role: "web", State: tc.state}
			e.liveness(st, now)
			if st.State != tc.wantState {
				t.Fatalf("state %q, want %q (%s)", st.State, tc.wantState, st.Summary())
			}
			if st.State == api.RoleLost && !strings.Contains(st.Summary(), "web lost: no word from the node's agent for") {
				t.Fatalf("summary %q", st.Summary())
			}
		})
	}
}
