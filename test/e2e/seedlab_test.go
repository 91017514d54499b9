package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSeedLab is `make lab`: seed 000's lab booted from pictl alone in a
// private namespace — two shop nodes (the app, extends web) building
// their page from a row they read from the shopdb node (extends db), two
// lb nodes sharing a VRRP address in front of them, and a router. It
// shows `pictl node ls`, fetches the page through the address, kills the
// master lb guest, shows the address move and the page still served, and
// cleans up (the namespaces, guests and temp dirs go with the test).
func TestSeedLab(t *testing.T) {
	if os.Getenv("PICTL_LAB") == "" {
		t.Skip("make lab runs the seed-000 lab (PICTL_LAB=1)")
	}
	l := newLab(t, "lab", "full")
	src := l.labImageSource()
	l.pictl("image", "import", "debian", src)
	t0 := time.Now()
	pkgs := append([]string{"mariadb-server", "mariadb-client"}, LabPackages...)
	l.installPackages("debian", pkgs...)
	t.Logf("lab: %s installed into the image with pictl image exec in %v", strings.Join(pkgs, " "), time.Since(t0).Round(time.Second))

	// The user roles beside cluster.yaml, the app's code on its volume.
	dir := filepath.Dir(l.ctl.Config)
	for from, to := range map[string]string{
		"../lab/roles":        filepath.Join(dir, "roles"),
		"../lab/volumes/shop": filepath.Join(l.ctl.StateDir, "volumes", "shop"),
	} {
		if err := os.MkdirAll(to, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", from+"/.", to+"/").CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", from, err, out)
		}
	}
	l.editConfig("  www: {readonly: true, roles: [web]}\n", "  www: {readonly: true, roles: [web, shop]}\n  shop: {readonly: true, roles: [shop]}\n")
	l.setRoles(`roles:
  shop: {description: seed 000's app}
  shopdb: {description: seed 000's database}
  lb: {vars: {vip: ` + lbVIP + `/24, backend: shop}}
  router: {vars: {uplink: eth0, routes: "192.168.77.0/24 dev eth0"}}
`)
	l.writeWWW("shop lab\n")
	nodes := []labNode{
		{"web1", "52:54:00:00:0a:01", "10.99.0.41", "shop"},
		{"web2", "52:54:00:00:0a:02", "10.99.0.42", "shop"},
		{"db1", "52:54:00:00:0a:03", "10.99.0.45", "shopdb"},
		{"lb1", "52:54:00:00:0a:04", lbOneAddr, "lb"},
		{"lb2", "52:54:00:00:0a:05", lbTwoAddr, "lb"},
		{"r1", "52:54:00:00:0a:06", routerAddr, "router"},
	}
	for _, n := range nodes {
		l.addNode(n, "debian")
	}
	l.serve()
	t.Logf("lab: pictl node ls before the guests power on:\n%s", l.pictl("node", "ls"))
	boot := time.Now()
	vms := l.startAll(nodes)
	l.waitRolesActive(nodes, vms, 25*time.Minute)
	t.Logf("lab: boot to all roles active: %v (6 Debian guests, TCG)", time.Since(boot).Round(time.Second))
	t.Logf("lab: pictl node ls:\n%s", l.pictl("node", "ls"))

	var first vipResult
	l.waitFor("the shop page through the virtual address", 3*time.Minute, func() (bool, error) {
		first = l.getVIP(l.net.NS, 5*time.Second)
		return first.err == nil && strings.Contains(first.body, "Hello from the shop database"), first.err
	})
	t.Logf("lab: GET http://%s/ answered by %s:\n%s", lbVIP, first.lb, first.body)
	for range 3 {
		r := l.getVIP(l.net.NS, 5*time.Second)
		t.Logf("lab: GET http://%s/ via %s: %s", lbVIP, r.lb, firstLine(r.body))
	}
	t.Logf("lab: %s on the lab's segment: %s", lbVIP, strings.TrimSpace(l.net.NS.MustExec("ip", "neigh", "show", lbVIP)))

	for i, n := range nodes {
		if n.name == first.lb {
			vms[i].Kill()
		}
	}
	killed := time.Now()
	t.Logf("lab: killed the master lb guest %s", first.lb)
	var after vipResult
	l.waitFor("the page through the backup lb", 2*time.Minute, func() (bool, error) {
		after = l.getVIP(l.net.NS, 10*time.Second)
		return after.err == nil && after.lb != first.lb && strings.Contains(after.body, "Hello from the shop database"), after.err
	})
	t.Logf("lab: %v after the kill, GET http://%s/ answered by %s:\n%s", time.Since(killed).Round(time.Millisecond), lbVIP, after.lb, after.body)
	t.Logf("lab: %s on the lab's segment now: %s", lbVIP, strings.TrimSpace(l.net.NS.MustExec("ip", "neigh", "show", lbVIP)))

	ping := l.lanAndUplink()
	l.waitFor("the lan client to reach the uplink host through r1", 30*time.Second, func() (bool, error) {
		err := ping()
		return err == nil, err
	})
	t.Logf("lab: a client on the lan reaches %s through r1 (NAT)", uplinkHost)
	t.Logf("lab: pictl node ls at the end:\n%s", l.pictl("node", "ls"))
}

// editConfig replaces old with new in cluster.yaml.
func (l *lab) editConfig(old, new string) {
	l.t.Helper()
	b, err := os.ReadFile(l.ctl.Config)
	if err != nil {
		l.t.Fatal(err)
	}
	s := strings.Replace(string(b), old, new, 1)
	if s == string(b) {
		l.t.Fatalf("cluster.yaml has no %q:\n%s", old, b)
	}
	if err := os.WriteFile(l.ctl.Config, []byte(s), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// installPackages installs pkgs into image through `pictl image exec`.
func (l *lab) installPackages(image string, pkgs ...string) {
	l.t.Helper()
	l.pictl("image", "exec", image, "--", "apt-get", "update", "-q")
	l.pictl(append([]string{"image", "exec", image, "--", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends"}, pkgs...)...)
}
