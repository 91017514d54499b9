package roles

import (
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGolden renders every built-in role (and none) for the sample
// cluster and compares the tree with testdata/golden/ROLE.txt
// (go test ./roles -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	c := builtins(t)
	for _, role := range append(c.Names(), NoRole) {
		t.Run(role, func(t *testing.T) {
			tr, err := c.Render(sampleNode(t, role), sampleFacts())
			if err != nil {
				t.Fatal(err)
			}
			got := dump(tr)
			p := filepath.Join("testdata", "golden", role+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (go test ./roles -run TestGolden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (-update rewrites it)\n--- got:\n%s", p, got)
			}
		})
	}
}

// shuffledFacts is sampleFacts with every map rebuilt in a random
// insertion order and the node list shuffled.
func shuffledFacts(r *rand.Rand) Facts {
	f := sampleFacts()
	shuffleMap := func(m map[string]Volume) map[string]Volume {
		keys := slices.Collect(maps.Keys(m))
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		out := map[string]Volume{}
		for _, k := range keys {
			out[k] = m[k]
		}
		return out
	}
	f.Volumes = shuffleMap(f.Volumes)
	f.Volumes["extra-a"], f.Volumes["extra-b"] = Volume{}, Volume{ReadOnly: true}
	r.Shuffle(len(f.Nodes), func(i, j int) { f.Nodes[i], f.Nodes[j] = f.Nodes[j], f.Nodes[i] })
	f.Vars = map[string]map[string]string{"lb": {"vip": "10.99.0.50/24", "db": "db"}, "db": {"port": "3306"},
		"router": {"uplink": "eth1", "routes": "10.1.0.0/16 via 10.99.0.254", "ospf_area": "0.0.0.0"}}
	return f
}

// TestRenderDeterministic: the same inputs in a different map and slice
// order give the same bytes and the same hash, for every role, with the
// catalog loaded afresh each time.
func TestRenderDeterministic(t *testing.T) {
	dir := writeRoles(t, map[string]string{
		"shop.yaml": "extends: web\nvars: {b: \"2\", a: \"1\", c: \"3\"}\nfiles:\n  /etc/shop: {content: \"{{range $k, $v := .Vars}}{{$k}}={{$v}} {{end}}{{range .Nodes}}{{.Name}} {{end}}\\n\"}\n",
	})
	r := rand.New(rand.NewPCG(1, 2))
	for _, role := range []string{"web", "db", "lb", "router", NoRole, "shop"} {
		var first *Tree
		for i := 0; i < 20; i++ {
			c, err := LoadCatalog(dir)
			if err != nil {
				t.Fatal(err)
			}
			node := sampleNodes()[0]
			node.Role = role
			tr, err := c.Render(node, shuffledFacts(r))
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = tr
				continue
			}
			if dump(tr) != dump(first) || tr.Hash() != first.Hash() {
				t.Fatalf("role %s: render %d differs from the first:\n%s\n--- first:\n%s", role, i, dump(tr), dump(first))
			}
		}
	}
}

func TestHashChangesWithContent(t *testing.T) {
	c := builtins(t)
	a, err := c.Render(sampleNode(t, "web"), sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{a.Hash(): "base"}
	variants := map[string]func(*Node, *Facts){
		"name":       func(n *Node, f *Facts) { n.Name = "pi9" },
		"role":       func(n *Node, f *Facts) { n.Role = "db" },
		"token":      func(n *Node, f *Facts) { f.Agent.Token = "other" },
		"controller": func(n *Node, f *Facts) { f.ControllerAddr = f.ControllerAddr.Next() },
		"nfs port":   func(n *Node, f *Facts) { f.NFSPort = 20490 },
	}
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		n, f := sampleNode(t, "web"), sampleFacts()
		variants[name](&n, &f)
		tr, err := c.Render(n, f)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[tr.Hash()]; dup {
			t.Errorf("changing the %s gives the same hash as %s", name, other)
		}
		seen[tr.Hash()] = name
	}
	// The hash covers modes, not only contents.
	b := &Tree{Files: slices.Clone(a.Files)}
	for i := range b.Files {
		if b.Files[i].Path == AgentEnvPath {
			b.Files[i].Mode = 0o644
		}
	}
	if b.Hash() == a.Hash() {
		t.Error("a mode change does not change the hash")
	}
}

// TestEveryNodeGets checks the files of every tree, role or none.
func TestEveryNodeGets(t *testing.T) {
	c := builtins(t)
	for _, role := range append(c.Names(), NoRole) {
		n := sampleNode(t, role)
		tr, err := c.Render(n, sampleFacts())
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"etc/hostname":   n.Name + "\n",
			"etc/machine-id": MachineID(n.Name) + "\n",
			AgentEnvPath:     "PICTL_AGENT_URL=http://10.99.0.1:7071\nPICTL_AGENT_TOKEN=0123456789abcdef\nPICTL_NODE=" + n.Name + "\n",
		}
		for p, data := range want {
			f, ok := tr.File(p)
			if !ok || string(f.Data) != data {
				t.Errorf("%s: %s = %q, want %q", role, p, f.Data, data)
			}
		}
		if f, _ := tr.File(AgentEnvPath); f.Mode != 0o600 {
			t.Errorf("%s: agent.env mode %v, want 0600", role, f.Mode)
		}
		if f, ok := tr.File("etc/systemd/system/multi-user.target.wants/pictl-agent.service"); !ok || string(f.Data) != "../pictl-agent.service" {
			t.Errorf("%s: agent not enabled: %+v", role, f)
		}
		def, _ := tr.File("etc/systemd/system/default.target")
		wantDefault := TargetName(role)
		if role == NoRole {
			wantDefault = "/lib/systemd/system/multi-user.target"
		}
		if !def.IsSymlink() || string(def.Data) != wantDefault {
			t.Errorf("%s: default.target -> %q, want %q", role, def.Data, wantDefault)
		}
		// Masks: units other roles want, not this one's.
		for _, other := range c.Names() {
			r, _ := c.Role(other)
			for _, u := range r.Units() {
				f, masked := tr.File("etc/systemd/system/" + u)
				mine := other == role
				if mine && masked && string(f.Data) == "/dev/null" {
					t.Errorf("%s: its own unit %s is masked", role, u)
				}
				if !mine && (!masked || string(f.Data) != "/dev/null") {
					t.Errorf("%s: %s of role %s is not masked", role, u, other)
				}
				// Its socket too: a package-enabled mariadb.socket would
				// listen on 3306 on a web node.
				if base, ok := strings.CutSuffix(u, ".service"); ok && !mine {
					if f, masked := tr.File("etc/systemd/system/" + base + ".socket"); !masked || string(f.Data) != "/dev/null" {
						t.Errorf("%s: %s.socket of role %s is not masked", role, base, other)
					}
				}
			}
		}
	}
}

func TestMachineIDStable(t *testing.T) {
	a, b := MachineID("pi1"), MachineID("pi2")
	if a == b || len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("machine ids %q %q", a, b)
	}
	if MachineID("pi1") != a {
		t.Fatal("machine id not stable")
	}
}

func TestTargetName(t *testing.T) {
	for role, want := range map[string]string{"web": "pictl-role-web.target", "": "multi-user.target", "none": "multi-user.target", "shop": "pictl-role-shop.target"} {
		if got := TargetName(role); got != want {
			t.Errorf("TargetName(%q) = %q, want %q", role, got, want)
		}
	}
}

func TestBuiltinAPI(t *testing.T) {
	c := builtins(t)
	if got := c.Names(); !slices.Equal(got, []string{"web", "db", "lb", "router"}) {
		t.Fatalf("Names() = %v", got)
	}
	web, _ := c.Role("web")
	port, check, ok := web.Balancer()
	if !ok || port != 8000 || check.Kind != "http" || check.Path != "/" || check.Interval <= 0 || check.Timeout <= 0 {
		t.Errorf("web balancer = %d %+v %v", port, check, ok)
	}
	if p := web.Packages(); len(p) != 1 || !slices.Equal(p[0], []string{"nginx-light", "nginx-core", "nginx"}) {
		t.Errorf("web packages %v", p)
	}
	if v := web.Volumes(); !slices.Equal(v, []string{"www"}) {
		t.Errorf("web volumes %v", v)
	}
	db, _ := c.Role("db")
	if _, _, ok := db.Balancer(); ok {
		t.Error("db offers the balancer a port")
	}
	if _, ok := c.Role("none"); ok {
		t.Error("none is a role")
	}
}
