package roles

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestExtendsWeb(t *testing.T) {
	dir := writeRoles(t, map[string]string{
		"shop/role.yaml": `extends: web
vars: {greeting: hello}
packages: [php-fpm, "nginx-light|nginx-core|nginx"]
units:
  nginx.service:
    dropin:
      Service: [LimitNOFILE=4096]
  php8.2-fpm.service: {}
  ssh.service: {shared: true}
files:
  /etc/nginx/conf.d/pictl-web.conf: {template: site.tmpl}
  /etc/motd: {content: "{{.Vars.greeting}} from {{.Node.Name}}\n", mode: "0640"}
`,
		"shop/site.tmpl": "server { listen {{.Balancer.Port}}; root {{.Mounts.www}}/shop; }\n",
	})
	c, err := LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	shop, ok := c.Role("shop")
	if !ok {
		t.Fatal("no shop role")
	}
	if shop.Extends() != "web" || shop.Builtin() {
		t.Errorf("extends %q builtin %v", shop.Extends(), shop.Builtin())
	}
	web, _ := c.Role("web")
	if shop.Description() != web.Description() {
		t.Errorf("description %q not inherited", shop.Description())
	}
	if got := shop.Packages(); len(got) != 2 || !slices.Equal(got[0], []string{"nginx-light", "nginx-core", "nginx"}) || !slices.Equal(got[1], []string{"php-fpm"}) {
		t.Errorf("packages %v: want web's, then php-fpm once", got)
	}
	if port, _, ok := shop.Balancer(); !ok || port != 8000 {
		t.Errorf("balancer %d %v not inherited", port, ok)
	}
	n := sampleNode(t, "web")
	n.Role = "shop"
	tr, err := c.Render(n, sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"etc/motd":                        "hello from pi1\n",
		"etc/nginx/conf.d/pictl-web.conf": "server { listen 8000; root /srv/www/shop; }\n",
		"etc/systemd/system/nginx.service.d/pictl.conf": "[Unit]\nPartOf=pictl-role-shop.target\nRequiresMountsFor=/srv/www\n\n[Service]\nLimitNOFILE=4096\n",
		"etc/systemd/system/default.target":             "pictl-role-shop.target",
		"etc/tmpfiles.d/pictl-role-shop.conf":           "d /var/log/nginx 0755 root adm -\n",
	}
	for p, data := range want {
		if f, ok := tr.File(p); !ok || string(f.Data) != data {
			t.Errorf("%s = %q, want %q", p, f.Data, data)
		}
	}
	if f, _ := tr.File("etc/motd"); f.Mode != 0o640 {
		t.Errorf("motd mode %v", f.Mode)
	}
	if f, ok := tr.File("etc/nginx/sites-enabled/default"); !ok || !f.IsWhiteout() {
		t.Error("web's whiteout not inherited")
	}
	target, _ := tr.File("etc/systemd/system/pictl-role-shop.target")
	for _, w := range []string{"Wants=srv-www.mount", "Wants=nginx.service", "Wants=php8.2-fpm.service", "Wants=ssh.service"} {
		if !strings.Contains(string(target.Data), w+"\n") {
			t.Errorf("target lacks %s:\n%s", w, target.Data)
		}
	}
	// On a web node, shop's own unit is masked, its shared one is not;
	// on a shop node, nothing web or shop wants is masked.
	webTree, err := c.Render(sampleNode(t, "web"), sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := webTree.File("etc/systemd/system/php8.2-fpm.service"); !ok || string(f.Data) != "/dev/null" {
		t.Error("php8.2-fpm.service not masked on a web node")
	}
	if _, ok := webTree.File("etc/systemd/system/ssh.service"); ok {
		t.Error("shared ssh.service masked on a web node")
	}
	for _, u := range []string{"nginx.service", "php8.2-fpm.service", "ssh.service"} {
		if _, ok := tr.File("etc/systemd/system/" + u); ok {
			t.Errorf("%s masked on a shop node", u)
		}
	}
	// A shared unit keeps running through a switch: not PartOf= the target.
	if f, ok := tr.File("etc/systemd/system/ssh.service.d/pictl.conf"); ok {
		t.Errorf("shared ssh.service gets a drop-in:\n%s", f.Data)
	}
}

func TestVars(t *testing.T) {
	dir := writeRoles(t, map[string]string{
		"kv.yaml": "extends: db\nvars: {motd: hi, vip: ~}\nfiles:\n  /etc/motd: {content: \"{{.Vars.motd}} {{.Vars.vip}} {{.Vars.port}}\\n\"}\n",
	})
	c, err := LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := c.Role("kv")
	if got := kv.Vars(); !slices.Equal(got, []string{"motd", "port", "vip"}) {
		t.Errorf("Vars() = %v", got)
	}
	render := func(vars map[string]string) (string, error) {
		n := sampleNode(t, "db")
		n.Role = "kv"
		f := sampleFacts()
		f.Vars = map[string]map[string]string{"kv": vars}
		tr, err := c.Render(n, f)
		if err != nil {
			return "", err
		}
		motd, _ := tr.File("etc/motd")
		cnf, _ := tr.File("etc/mysql/mariadb.conf.d/60-pictl.cnf")
		return string(motd.Data) + string(cnf.Data), nil
	}
	got, err := render(map[string]string{"vip": "10.99.0.50", "port": "3307"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "hi 10.99.0.50 3307\n") || !strings.Contains(got, "port         = 3307\n") || !strings.Contains(got, "bind-address = 10.99.0.12\n") {
		t.Errorf("rendered:\n%s", got)
	}
	for _, tt := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{}, "role kv needs var vip: set roles: {kv: {vars: {vip: ...}}} in cluster.yaml"},
		{map[string]string{"vip": "x", "vipp": "y"}, "role kv has no var vipp (it takes motd, port, vip)"},
		{map[string]string{"vip": "a\nb"}, "role kv's var vip has a line break"},
	} {
		_, err := render(tt.vars)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("vars %v: error %v, want %q", tt.vars, err, tt.want)
		}
		if cerr := kv.CheckVars(tt.vars); cerr == nil || !strings.Contains(cerr.Error(), tt.want) {
			t.Errorf("CheckVars(%v) = %v", tt.vars, cerr)
		}
	}
	if err := kv.CheckVars(map[string]string{"vip": "1"}); err != nil {
		t.Errorf("CheckVars with the required var: %v", err)
	}
}

// TestRenderErrors: what a role cannot be rendered with is a clear error,
// naming the role file's position when a template fails.
func TestRenderErrors(t *testing.T) {
	dir := writeRoles(t, map[string]string{
		"t.yaml":  "files:\n  /etc/a: {content: \"{{.Vars.nope}}\"}\n",
		"u.yaml":  "vars: {v: x}\nunits:\n  u.service:\n    dropin:\n      Service: [\"Environment=V={{.Vars.v}}\"]\n",
		"rw.yaml": "mounts:\n  www: {path: /srv/www, mode: rw}\n",
	})
	c, err := LoadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	node := func(role string) Node { n := sampleNode(t, "web"); n.Role = role; return n }
	noWWW := sampleFacts()
	delete(noWWW.Volumes, "www")
	noController := sampleFacts()
	noController.ControllerAddr = netip.Addr{}
	backslash := sampleFacts()
	backslash.Vars = map[string]map[string]string{"u": {"v": `C:\`}}
	badName := node("web")
	badName.Name = "pi 1"
	for _, tt := range []struct {
		name  string
		node  Node
		facts Facts
		want  string
	}{
		{"unknown role", node("wbe"), sampleFacts(), `render role wbe for node pi1: unknown role "wbe" (known: web, db, lb, router, rw, t, u, none)`},
		{"missing key", node("t"), sampleFacts(), dir + `/t.yaml:2:28: template: at <.Vars.nope>: map has no entry for key "nope"`},
		{"no www volume", node("web"), noWWW, "role web mounts volume www, which this node may not mount"},
		{"rw of read-only", node("rw"), sampleFacts(), "role rw mounts volume www read-write, but the volume is read-only in cluster.yaml"},
		{"no controller address", node("web"), noController, "the controller's address is unknown"},
		{"unit value backslash", node("u"), backslash, "ends in a backslash"},
		{"bad node name", badName, sampleFacts(), `node name "pi 1" is not a host name`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Render(tt.node, tt.facts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("db without address", func(t *testing.T) {
		n := sampleNode(t, "db")
		n.Addr = netip.Addr{}
		_, err := c.Render(n, sampleFacts())
		if err == nil || !strings.Contains(err.Error(), "builtin/db/mariadb.cnf.tmpl:4:") || !strings.Contains(err.Error(), "node pi2: the node has no address yet") {
			t.Errorf("error %v", err)
		}
	})
}
