package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/testnet"
	"github.com/pictl/pictl/test/vm"
)

// The addresses of the lb/router test's guests and namespaces.
const (
	lbVIP      = "10.99.0.50"
	lbWebAddr  = "10.99.0.41"
	lbOneAddr  = "10.99.0.51"
	lbTwoAddr  = "10.99.0.52"
	routerAddr = "10.99.0.61"
	// The "uplink" host, on the same wire but in a subnet only the
	// router node routes to; it knows the way back to the router alone.
	uplinkHost = "192.168.77.1"
	lanClient  = "10.99.0.200"
)

// Four Debian guests netbooted from pictl alone, their packages installed
// with `pictl image exec`: a web node, two lb nodes sharing a VRRP
// address, a router. A client loop of GETs through the address sees at
// most the request in flight fail when the master lb guest is killed;
// the backup owns the address within seconds. A client on another subnet
// reaches the uplink host only through the router node (masqueraded),
// and no more after `pictl role set r1 none`.
func TestLBFailoverAndRouterDebian(t *testing.T) {
	if os.Getenv("PICTL_E2E_NO_DEBIAN") != "" {
		t.Skip("PICTL_E2E_NO_DEBIAN is set")
	}
	l := newLab(t, "e2elb", "full")
	src := l.labImageSource()
	l.pictl("image", "import", "debian", src)
	t0 := time.Now()
	l.installPackages("debian", LabPackages...)
	t.Logf("e2e: %s installed into the image in %v", strings.Join(LabPackages, " "), time.Since(t0).Round(time.Second))

	l.setRoles(`roles:
  lb: {vars: {vip: ` + lbVIP + `/24}}
  router: {vars: {uplink: eth0, routes: "192.168.77.0/24 dev eth0"}}
`)
	const page = "hello through the virtual address\n"
	l.writeWWW(page)
	guests := []labNode{
		{"w1", "52:54:00:17:00:01", lbWebAddr, "web"},
		{"lb1", "52:54:00:17:00:02", lbOneAddr, "lb"},
		{"lb2", "52:54:00:17:00:03", lbTwoAddr, "lb"},
		{"r1", "52:54:00:17:00:04", routerAddr, "router"},
	}
	for _, g := range guests {
		l.addNode(g, "debian")
	}
	l.serve()
	bootStart := time.Now()
	vms := l.startAll(guests)
	l.waitRolesActive(guests, vms, 12*time.Minute)
	t.Logf("e2e: 4 guests booted into their roles (all active) in %v", time.Since(bootStart).Round(time.Second))
	t.Logf("pictl node ls:\n%s", l.pictl("node", "ls"))

	// --- a changed layer of the same role: reloaded, not switched.
	l.refreshLB(page, guests, vms)

	// --- VRRP failover.
	master := ""
	l.waitFor("a GET through the virtual address", 2*time.Minute, func() (bool, error) {
		r := l.getVIP(l.net.NS, 5*time.Second)
		master = r.lb
		return r.err == nil && r.body == page, r.err
	})
	t.Logf("e2e: %s holds %s", master, lbVIP)
	loop := startGetLoop(l, l.net.NS, 150*time.Millisecond)
	time.Sleep(3 * time.Second)
	killed := time.Now()
	for i, g := range guests {
		if g.name == master {
			vms[i].Kill()
		}
	}
	t.Logf("e2e: killed %s's guest", master)
	l.waitFor("the backup to answer through the virtual address", time.Minute, func() (bool, error) {
		return loop.answeredBy(func(lb string) bool { return lb != "" && lb != master }) >= 10, nil
	})
	recs := loop.stop()
	lastOld, firstNew, failed, ok := failover(recs, master, page)
	t.Logf("e2e: GET loop: %d requests, %d answered, %d failed; last answer from %s %v after the kill, first from the backup %v after the kill",
		len(recs), ok, len(failed), master, lastOld.Sub(killed).Round(time.Millisecond), firstNew.Sub(killed).Round(time.Millisecond))
	t.Logf("e2e: VRRP failover time (last answered request from the old master → first from the new): %v", firstNew.Sub(lastOld).Round(time.Millisecond))
	// One request at a time: only the one in flight when the guest died may fail.
	if len(failed) > 1 {
		t.Errorf("%d GETs failed through the failover (at most the one in flight may): %v", len(failed), failed)
	}
	if d := firstNew.Sub(killed); d > 15*time.Second {
		t.Errorf("the backup answered only %v after the kill", d)
	}

	// --- router.
	ping := l.lanAndUplink()
	l.waitFor("the lan client to reach the uplink host through r1", 30*time.Second, func() (bool, error) {
		err := ping()
		return err == nil, err
	})
	t.Logf("e2e: %s reaches %s through r1 (masqueraded: %s knows no way back to %s)", lanClient, uplinkHost, uplinkHost, lanClient)
	t0 = time.Now()
	out := l.pictl("role", "set", "r1", "none", "--wait", "--timeout", "5m")
	t.Logf("e2e: role set r1 none --wait (%v): %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(out))
	for i := range 3 {
		if err := ping(); err == nil {
			t.Errorf("ping %d: the lan client still reaches %s after r1 left the router role", i, uplinkHost)
		}
	}
	// --- the killed guest's agent: its long poll's connection fails its
	// keepalive probes, and node ls stops calling the node active.
	var lost string
	l.waitFor(master+" to be shown lost", time.Minute, func() (bool, error) {
		ns, err := l.ctl.API().Nodes(l.ctx)
		if err != nil {
			return false, err
		}
		for _, n := range ns {
			if n.Name == master && n.Runtime != nil && n.Runtime.Role != nil {
				lost = n.Runtime.Role.Summary()
				return n.Runtime.Role.State == api.RoleLost, fmt.Errorf("%s: %s", master, lost)
			}
		}
		return false, nil
	})
	t.Logf("e2e: %v after its guest was killed: %s: %s", time.Since(killed).Round(time.Second), master, lost)
	t.Logf("pictl node ls:\n%s", l.pictl("node", "ls"))
	if t.Failed() {
		for i, g := range guests {
			t.Logf("--- console tail of %s:\n%s", g.name, vms[i].Snapshot().Tail(60))
		}
	}
}

// refreshLB changes the lb role's vars (the stats page's port) while a GET
// loop runs through the virtual address: both lb nodes get a new layer,
// their agents reload HAProxy and keepalived (stage "refresh", no
// isolate), the new port answers, and no GET fails.
func (l *lab) refreshLB(page string, nodes []labNode, vms []*vm.Guest) {
	l.t.Helper()
	layers := func() map[string]*api.RoleStatus {
		out := map[string]*api.RoleStatus{}
		ns, err := l.ctl.API().Nodes(l.ctx)
		if err != nil {
			return out
		}
		for _, n := range ns {
			if n.Runtime != nil && n.Runtime.Role != nil {
				out[n.Name] = n.Runtime.Role
			}
		}
		return out
	}
	before := layers()
	l.waitFor("a GET through the virtual address", 2*time.Minute, func() (bool, error) {
		r := l.getVIP(l.net.NS, 5*time.Second)
		return r.err == nil && r.body == page, r.err
	})
	loop := startGetLoop(l, l.net.NS, 150*time.Millisecond)
	t0 := time.Now()
	l.editConfig("lb: {vars: {vip: "+lbVIP+"/24}}", "lb: {vars: {vip: "+lbVIP+"/24, stats_port: \"8405\"}}")
	l.waitFor("both lb nodes to apply their new layer", 3*time.Minute, func() (bool, error) {
		now := layers()
		for _, n := range []string{"lb1", "lb2"} {
			s := now[n]
			if s != nil && before[n] != nil && s.Layer != before[n].Layer && s.State == api.RoleFailed {
				for i, g := range nodes {
					if g.name == n {
						l.t.Fatalf("%s: %s (%s)\n--- console tail of %s:\n%s", n, s.Summary(), s.Error, n, vms[i].Snapshot().Tail(120))
					}
				}
			}
			if s == nil || before[n] == nil || s.Layer == before[n].Layer || s.Summary() != "lb active" {
				return false, nil
			}
		}
		return true, nil
	})
	took := time.Since(t0)
	time.Sleep(time.Second)
	recs := loop.stop()
	_, _, failed, ok := failover(recs, "", page)
	now := layers()
	for _, n := range []string{"lb1", "lb2"} {
		st := now[n].Stages
		l.t.Logf("e2e: %s applied its new lb layer: stages %v", n, st)
		if st["refresh"] == 0 || st["isolate"] != 0 {
			l.t.Errorf("%s: a same-role layer was not refreshed (stages %v)", n, st)
		}
		out, err := l.net.NS.Command(l.ctx, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://"+map[string]string{"lb1": lbOneAddr, "lb2": lbTwoAddr}[n]+":8405/").CombinedOutput()
		if err != nil || string(out) != "200" {
			l.t.Errorf("%s: HAProxy's stats page not on the new port after the reload: %s %v", n, out, err)
		}
	}
	l.t.Logf("e2e: lb vars changed → both lb nodes reloaded in %v; GET loop meanwhile: %d answered, %d failed", took.Round(time.Millisecond), ok, len(failed))
	if len(failed) > 0 {
		l.t.Errorf("GETs failed while HAProxy reloaded: %v", failed)
	}
}

// lanAndUplink makes two namespaces on br0: a lan client (default route
// via the router node) and an uplink host in a subnet only the router
// node routes to, which knows the way back to the router's address alone
// — so the client's packets reach it only forwarded and masqueraded by
// the router node. The returned func pings the uplink host from the client.
func (l *lab) lanAndUplink() func() error {
	l.t.Helper()
	lan := testnet.New(l.t, "e2elan")
	l.net.NS.Veth("vlan0", "br0", lan, "eth0", lanClient+"/24")
	lan.MustIP("route", "add", "default", "via", routerAddr)
	up := testnet.New(l.t, "e2eup")
	l.net.NS.Veth("vup0", "br0", up, "eth0", uplinkHost+"/24")
	up.MustIP("route", "add", routerAddr+"/32", "dev", "eth0")
	return func() error {
		out, err := lan.Command(l.ctx, "busybox", "ping", "-c", "1", "-W", "2", uplinkHost).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
}

// labNode is one guest of a lab: name, MAC, reserved address, role.
type labNode struct{ name, mac, addr, role string }

// labImageSource unpacks the Debian image with the harness's boot files
// and netfilter modules; "" skips the test when there is no Debian image.
func (l *lab) labImageSource() string {
	l.t.Helper()
	tarPath, err := EnsureDebianTar(l.ctx, l.t.Logf)
	if err != nil {
		l.t.Skipf("Debian image unavailable: %v", err)
	}
	src := filepath.Join(l.t.TempDir(), "debian")
	if err := DebianImageSource(l.ctx, src, tarPath, l.art); err != nil {
		l.t.Fatal(err)
	}
	if err := AddNetfilterModules(l.ctx, src, l.art); err != nil {
		l.t.Fatal(err)
	}
	return src
}

// setRoles replaces cluster.yaml's empty roles: section.
func (l *lab) setRoles(section string) {
	l.t.Helper()
	b, err := os.ReadFile(l.ctl.Config)
	if err != nil {
		l.t.Fatal(err)
	}
	s := strings.Replace(string(b), "\nroles: {}\n", "\n"+section, 1)
	if s == string(b) {
		l.t.Fatalf("cluster.yaml has no empty roles: section:\n%s", b)
	}
	if err := os.WriteFile(l.ctl.Config, []byte(s), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// writeWWW puts index.html into the www volume.
func (l *lab) writeWWW(page string) {
	l.t.Helper()
	www := filepath.Join(l.ctl.StateDir, "volumes", "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) addNode(n labNode, image string) {
	l.t.Helper()
	l.pictl("node", "add", n.name, "--mac", n.mac, "--image", image, "--ip", n.addr,
		// The journal on the console: a failed unit's own words end up
		// in the console tail a failing test prints.
		"--cmdline", "console=ttyS0 panic=-1 quiet HOLD systemd.journald.forward_to_console=1")
	l.pictl("role", "set", n.name, n.role)
}

// startAll powers the guests on together.
func (l *lab) startAll(nodes []labNode) []*vm.Guest {
	l.t.Helper()
	var out []*vm.Guest
	for _, n := range nodes {
		g := l.start(n.name, n.mac, 30*time.Minute)
		l.t.Cleanup(g.Kill)
		out = append(out, g)
	}
	return out
}

// waitRolesActive waits until every node reports "ROLE active".
func (l *lab) waitRolesActive(nodes []labNode, vms []*vm.Guest, d time.Duration) {
	l.t.Helper()
	l.waitFor("every node to report its role active", d, func() (bool, error) {
		for i, g := range vms {
			if r := g.Snapshot(); r.Panic != "" || r.Fail != "" {
				l.t.Fatalf("guest %s failed to boot:\n%s", nodes[i].name, r.Tail(60))
			}
		}
		ns, err := l.ctl.API().Nodes(l.ctx)
		if err != nil {
			return false, err
		}
		state := map[string]*api.RoleStatus{}
		for _, n := range ns {
			if n.Runtime != nil {
				state[n.Name] = n.Runtime.Role
			}
		}
		for i, n := range nodes {
			s := state[n.name]
			if s != nil && s.State == api.RoleFailed {
				l.t.Fatalf("%s: %s\n--- console tail of %s:\n%s", n.name, s.Summary(), n.name, vms[i].Snapshot().Tail(80))
			}
			if s == nil || s.Summary() != n.role+" active" {
				sum := "nothing"
				if s != nil {
					sum = s.Summary()
				}
				return false, fmt.Errorf("%s: %s", n.name, sum)
			}
		}
		return true, nil
	})
}

// vipResult is one GET through the virtual address.
type vipResult struct {
	start, end time.Time
	lb         string // X-Pictl-LB: the lb node that answered
	body       string
	err        error
}

// getVIP GETs / through the virtual address from ns with curl, each time
// on a new connection.
func (l *lab) getVIP(ns *testnet.NS, timeout time.Duration) vipResult {
	r := vipResult{start: time.Now()}
	out, err := ns.Command(l.ctx, "curl", "-sS", "-D", "-", "--max-time", fmt.Sprint(timeout.Seconds()),
		"http://"+lbVIP+"/").CombinedOutput()
	r.end = time.Now()
	head, body, _ := strings.Cut(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n\n")
	for _, line := range strings.Split(head, "\n") {
		if v, ok := strings.CutPrefix(strings.ToLower(line), "x-pictl-lb:"); ok {
			r.lb = strings.TrimSpace(v)
		}
	}
	r.body = body
	if err != nil {
		r.err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	} else if !strings.HasPrefix(head, "HTTP/1.1 200") {
		r.err = fmt.Errorf("answer %q", strings.SplitN(head, "\n", 2)[0])
	}
	return r
}

// getLoop GETs through the virtual address one request at a time.
type getLoop struct {
	mu     sync.Mutex
	recs   []vipResult
	cancel context.CancelFunc
	done   chan struct{}
}

func startGetLoop(l *lab, ns *testnet.NS, pause time.Duration) *getLoop {
	ctx, cancel := context.WithCancel(l.ctx)
	g := &getLoop{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for ctx.Err() == nil {
			// A request sent while nobody owns the address is not lost:
			// TCP retransmits its SYN (1 s, 3 s), by then to the backup.
			r := l.getVIP(ns, 15*time.Second)
			if ctx.Err() != nil {
				return
			}
			g.mu.Lock()
			g.recs = append(g.recs, r)
			g.mu.Unlock()
			time.Sleep(pause)
		}
	}()
	return g
}

func (g *getLoop) answeredBy(match func(lb string) bool) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, r := range g.recs {
		if r.err == nil && match(r.lb) {
			n++
		}
	}
	return n
}

func (g *getLoop) stop() []vipResult {
	g.cancel()
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recs
}

// failover reads a GET loop: when the old master last answered, when
// the new one first did, which requests failed and how many answered.
func failover(recs []vipResult, old, page string) (lastOld, firstNew time.Time, failed []string, ok int) {
	for _, r := range recs {
		switch {
		case r.err != nil || r.body != page:
			failed = append(failed, fmt.Sprintf("%s+%v: %v", r.start.Format("15:04:05.000"), r.end.Sub(r.start).Round(time.Millisecond), r.err))
		case r.lb == old:
			ok++
			lastOld = r.end
		default:
			ok++
			if firstNew.IsZero() {
				firstNew = r.end
			}
		}
	}
	return lastOld, firstNew, failed, ok
}
