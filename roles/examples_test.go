package roles

import (
	"os/exec"
	"strings"
	"testing"
)

// The lab's user roles (test/lab/roles, walked through in
// docs/roles.md) load, extend web and db, render what the walkthrough
// says, and pass systemd-analyze verify.
func TestExampleLabRoles(t *testing.T) {
	c, err := LoadCatalog("../test/lab/roles")
	if err != nil {
		t.Fatal(err)
	}
	f := sampleFacts()
	f.Nodes = append(f.Nodes, Node{Name: "pi8", Addr: sampleNodes()[1].Addr.Next(), Role: "shopdb"})
	shop := Node{Name: "pi9", Arch: "arm64", Role: "shop"}
	tr, err := c.Render(shop, f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"etc/shop/db.env":                           "DB_HOST=10.99.0.13\nDB_USER=shop\nDB_PASSWORD=shop\n",
		"etc/nginx/conf.d/pictl-web.conf":           "root /run/shop;",
		"etc/systemd/system/pictl-role-shop.target": "Wants=shop-app.service",
		"etc/systemd/system/srv-shop.mount":         "What=10.99.0.1:/volumes/shop",
	}
	for p, w := range want {
		if file, ok := tr.File(p); !ok || !strings.Contains(string(file.Data), w) {
			t.Errorf("%s lacks %q:\n%s", p, w, file.Data)
		}
	}
	if port, _, ok := mustRole(t, c, "shop").Balancer(); !ok || port != 8000 {
		t.Errorf("shop does not offer web's balancer port: %d %v", port, ok)
	}
	db, err := c.Render(Node{Name: "pi8", Addr: sampleNodes()[1].Addr, Role: "shopdb"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if file, ok := db.File("etc/shop/schema.sql"); !ok || !strings.Contains(string(file.Data), "REPLACE INTO shop.greetings VALUES (1, 'Hello from the shop database');") {
		t.Errorf("schema.sql:\n%s", file.Data)
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	for _, role := range []string{"shop", "shopdb"} {
		if problems, units := verifyRole(t, analyze, hostUnitDir(), c, role); problems != "" {
			t.Errorf("systemd-analyze verify %s:\n%s", strings.Join(units, " "), problems)
		}
	}
}

func mustRole(t *testing.T, c *Catalog, name string) *Role {
	t.Helper()
	r, ok := c.Role(name)
	if !ok {
		t.Fatalf("no role %s", name)
	}
	return r
}
