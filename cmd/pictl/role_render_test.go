package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitMakesWWW: pictl init declares the www volume the web role
// mounts, with an index page, and leaves an existing page alone.
func TestInitMakesWWW(t *testing.T) {
	e := newEnv(t)
	page := filepath.Join(e.dir, "state", "volumes", "www", "index.html")
	e.init()
	data, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(data), "pictl web node") {
		t.Fatalf("index page: %v %q", err, data)
	}
	cfg, _ := os.ReadFile(e.config)
	if !strings.Contains(string(cfg), "\n  www: {readonly: true, roles: [web]}\n") {
		t.Errorf("cluster.yaml has no www volume:\n%s", cfg)
	}
	if err := os.WriteFile(page, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.config); err != nil {
		t.Fatal(err)
	}
	e.init()
	if data, _ := os.ReadFile(page); string(data) != "mine" {
		t.Errorf("init replaced an existing index page: %q", data)
	}
}

func TestRoleShowRender(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2", "--ip", "10.99.0.13")

	web := e.ok("role", "show", "web", "--render", "pi3")
	for _, want := range []string{
		"# pi3 as web: ",
		"\n== /etc/hostname (0644)\npi3\n",
		"\n== /etc/systemd/system/default.target -> pictl-role-web.target\n",
		"\n== /etc/nginx/sites-enabled/default (removed: hides the image's file)\n",
		"\n== /etc/pictl/agent.env (0600)\n",
		"What=10.99.0.1:/volumes/www\n",
		"Options=vers=3,proto=tcp,port=2049,mountport=2049,nolock,noacl,addr=10.99.0.1,ro\n",
		"\n== /etc/systemd/system/mariadb.service -> /dev/null\n",
	} {
		if !strings.Contains(web, want) {
			t.Errorf("role show web --render pi3 lacks %q:\n%s", want, web)
		}
	}
	if db := e.ok("role", "show", "db", "--render", "pi3"); !strings.Contains(db, "bind-address = 10.99.0.13\n") {
		t.Errorf("db render:\n%s", db)
	}
	if none := e.ok("role", "show", "none", "--render", "pi3"); !strings.Contains(none, "default.target -> /lib/systemd/system/multi-user.target") {
		t.Errorf("none render:\n%s", none)
	}

	// JSON: the same tree, the same hash, every time.
	var a, b renderedTree
	if err := json.Unmarshal([]byte(e.ok("role", "show", "web", "--render", "pi3", "-o", "json")), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(e.ok("role", "show", "web", "--render", "pi3", "-o", "json")), &b); err != nil {
		t.Fatal(err)
	}
	if a.Hash == "" || a.Hash != b.Hash || len(a.Files) != len(b.Files) || len(a.Files) < 10 {
		t.Errorf("json renders differ or are short: %s %s %d", a.Hash, b.Hash, len(a.Files))
	}

	e.fails("no node named pi9", "role", "show", "web", "--render", "pi9")
	e.fails(`unknown role "cache"`, "role", "show", "cache", "--render", "pi3")
	e.ok("node", "add", "pi4", "--mac", "dc:a6:32:01:36:c4")
	e.fails("node pi4: the node has no address yet", "role", "show", "db", "--render", "pi4")
}

func TestUserRolesInCLI(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2", "--ip", "10.99.0.13")
	dir := filepath.Join(e.dir, "roles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shop := "description: the shop\nextends: web\nfiles:\n  /etc/motd: {content: \"shop {{.Node.Name}}\\n\"}\n"
	if err := os.WriteFile(filepath.Join(dir, "shop.yaml"), []byte(shop), 0o644); err != nil {
		t.Fatal(err)
	}
	ls := e.ok("role", "ls")
	if !strings.Contains(ls, "shop") || !strings.Contains(ls, "user") || !strings.Contains(ls, "built-in") {
		t.Errorf("role ls:\n%s", ls)
	}
	show := e.ok("role", "show", "shop")
	for _, want := range []string{"extends:", "web", "pictl-role-shop.target", "nginx.service", "port 8000"} {
		if !strings.Contains(show, want) {
			t.Errorf("role show shop lacks %q:\n%s", want, show)
		}
	}
	if out := e.ok("role", "show", "shop", "--render", "pi3"); !strings.Contains(out, "\n== /etc/motd (0644)\nshop pi3\n") {
		t.Errorf("render shop:\n%s", out)
	}
	// A role file is all it takes to set the role.
	if got := e.ok("role", "set", "pi3", "shop"); got != "pi3: role none → shop\n" {
		t.Errorf("role set pi3 shop printed %q", got)
	}
	e.fails(`unknown role "cache": use one of web, db, lb, router, shop, or add `+filepath.Join(dir, "cache.yaml"), "role", "set", "pi3", "cache")
	// A broken role file: every command that reads roles says where;
	// setting a built-in still works.
	if err := os.WriteFile(filepath.Join(dir, "shop.yaml"), []byte("extends: web\nunits: [x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.fails(filepath.Join(dir, "shop.yaml")+":2:1: YAML syntax error", "role", "ls")
	e.fails(filepath.Join(dir, "shop.yaml")+":2:1: YAML syntax error", "role", "set", "pi3", "shop")
	if got := e.ok("role", "set", "pi3", "web"); got != "pi3: role shop → web\n" {
		t.Errorf("role set pi3 web with a broken shop.yaml printed %q", got)
	}
}
