package roles

import (
	"bytes"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

// TestStoppingTheTargetStopsEverything checks the invariant on the trees
// themselves: every unit a role's target wants is PartOf= the target (in
// its own file or pictl's drop-in), so `systemctl stop` of the target (or
// isolating another) stops it; mounts are also StopWhenUnneeded=; no
// file of the tree configures boot-time state (sysctl.d, modules-load.d)
// that no unit undoes.
func TestStoppingTheTargetStopsEverything(t *testing.T) {
	dir := writeRoles(t, map[string]string{
		"shop.yaml": "extends: web\nunits:\n  shop.service:\n    unit: {Service: [ExecStart=/usr/bin/shop]}\n",
	})
	c, err := LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range c.Names() {
		n := sampleNode(t, "web")
		n.Role = role
		tr, err := c.Render(n, sampleFacts())
		if err != nil {
			t.Fatal(err)
		}
		target := TargetName(role)
		wants := values(t, tr, unitPath(target), "Unit", "Wants")
		for _, u := range wants {
			partOf := append(values(t, tr, unitPath(u), "Unit", "PartOf"), values(t, tr, unitPath(u+".d/pictl.conf"), "Unit", "PartOf")...)
			if !slices.Contains(partOf, target) {
				t.Errorf("%s: %s is wanted by the target but not PartOf= it", role, u)
			}
			if strings.HasSuffix(u, ".mount") && !slices.Contains(values(t, tr, unitPath(u), "Unit", "StopWhenUnneeded"), "yes") {
				t.Errorf("%s: mount %s is not StopWhenUnneeded=yes", role, u)
			}
		}
		r, _ := c.Role(role)
		for _, u := range r.Units() {
			if !slices.Contains(wants, u) {
				t.Errorf("%s: the target does not want its unit %s", role, u)
			}
		}
		for _, f := range tr.Files {
			if d, bad := outlivesTarget(f.Path); bad {
				t.Errorf("%s: %s is under %s", role, f.Path, d)
			}
		}
	}
}

// values reads the values of one setting of a unit file of the tree.
func values(t *testing.T, tr *Tree, p, section, name string) []string {
	t.Helper()
	f, ok := tr.File(p)
	if !ok || f.IsSymlink() || f.IsWhiteout() {
		return nil
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(f.Data))
	if err != nil {
		t.Fatalf("%s: %v", path.Base(p), err)
	}
	var out []string
	for _, o := range opts {
		if o.Section == section && o.Name == name {
			out = append(out, strings.Fields(o.Value)...)
		}
	}
	return out
}
