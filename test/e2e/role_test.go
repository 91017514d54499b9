package e2e

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/test/vm"
)

// One Debian guest netbooted from pictl alone, with nginx and MariaDB
// installed into its image through `pictl image exec`: it boots as web
// (nginx answers on :8000 with the shared www volume's page), `pictl role
// set d1 db --wait` switches it live (nginx gone, MariaDB answers on 3306),
// and back to web.
func TestRoleSwitchDebian(t *testing.T) {
	if os.Getenv("PICTL_E2E_NO_DEBIAN") != "" {
		t.Skip("PICTL_E2E_NO_DEBIAN is set")
	}
	l := newLab(t, "e2erole", "full")
	tarPath, err := EnsureDebianTar(l.ctx, t.Logf)
	if err != nil {
		t.Skipf("Debian image unavailable: %v", err)
	}
	src := filepath.Join(t.TempDir(), "debian")
	if err := DebianImageSource(l.ctx, src, tarPath, l.art); err != nil {
		t.Fatal(err)
	}
	// The marker runs whenever multi-user.target is reached again (every
	// isolate): let it also say, once the switch has settled, which role
	// services run and whether the www volume is mounted.
	marker := strings.Replace(DebianMarkerScript, "\nsync\n", "\n"+unitsLater+"\nsync\n", 1)
	if marker == DebianMarkerScript {
		t.Fatal("marker script has no sync line to add the unit states before")
	}
	if err := os.WriteFile(filepath.Join(src, "usr/local/sbin/pictl-e2e-marker"), []byte(marker), 0o755); err != nil {
		t.Fatal(err)
	}
	l.pictl("image", "import", "debian", src)
	t0 := time.Now()
	l.pictl("image", "exec", "debian", "--", "apt-get", "update", "-q")
	l.pictl("image", "exec", "debian", "--", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx-light", "mariadb-server")
	t.Logf("e2e: nginx-light and mariadb-server installed into the image in %v", time.Since(t0).Round(time.Second))

	// The shared docroot.
	cfg, err := os.ReadFile(l.ctl.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "\nvolumes: {}\n", "\nvolumes:\n  www: {readonly: true}\n", 1))
	if err := os.WriteFile(l.ctl.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	www := filepath.Join(l.ctl.StateDir, "volumes", "www")
	os.MkdirAll(www, 0o755)
	const page = "hello from the shared www volume\n"
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	// User roles that cannot be applied (see badInput): one whose template
	// fails, one whose package the image lacks.
	rolesDir := filepath.Join(filepath.Dir(l.ctl.Config), "roles")
	if err := os.MkdirAll(rolesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"tmplbad.yaml": "description: a template that fails\nfiles:\n  /etc/motd: {content: \"{{.Node.Nope}}\"}\n",
		"cowsay.yaml":  "extends: web\npackages: [cowsay]\n",
	} {
		if err := os.WriteFile(filepath.Join(rolesDir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l.pictl("node", "add", "d1", "--mac", macDebian, "--image", "debian", "--ip", "10.99.0.44",
		"--cmdline", "console=ttyS0 panic=-1 quiet systemd.show_status=1 HOLD")
	l.pictl("role", "set", "d1", "web")
	l.serve()

	g := l.start("d1", macDebian, 15*time.Minute)
	defer g.Kill()
	state := func() *api.RoleStatus {
		ns, err := l.ctl.API().Nodes(l.ctx)
		if err != nil {
			return nil
		}
		for _, n := range ns {
			if n.Name == "d1" && n.Runtime != nil {
				return n.Runtime.Role
			}
		}
		return nil
	}
	bootStart := time.Now()
	l.waitFor("d1 to report web active", 8*time.Minute, func() (bool, error) {
		if r := g.Snapshot(); r.Panic != "" || r.Fail != "" {
			t.Fatalf("guest failed to boot:\n%s", r.Tail(60))
		}
		s := state()
		return s != nil && s.Summary() == "web active", nil
	})
	t.Logf("e2e: d1 booted into web in %v", time.Since(bootStart).Round(time.Second))
	addr := "10.99.0.44"
	get := func() (string, error) {
		out, err := l.net.NS.Command(l.ctx, "curl", "-fsS", "--max-time", "5", "http://"+addr+":8000/").CombinedOutput()
		return string(out), err
	}
	if out, err := get(); err != nil || out != page {
		t.Fatalf("web: GET :8000 = %q, %v", out, err)
	}
	// mariadb-server enabled mariadb.socket in the image; a web node
	// masks it with the service.
	if _, err := mysqlGreeting(l, addr); err == nil {
		t.Errorf("MariaDB answers on a web node")
	}
	units := unitStates(t, l, g, 0)
	t.Logf("e2e: web units: %v", units)
	if units["nginx.service"] != "active" || units["srv-www.mount"] != "active" || units["mariadb.socket"] == "active" {
		t.Errorf("web: unit states %v", units)
	}
	seen := countUnitLines(g)
	// pictl's balancer (ports.balancer, 80) takes d1 in once its agent
	// reports web active and the role's check passes; it drains and drops
	// d1 when it leaves web.
	viaBalancer := func() (string, error) {
		out, err := l.net.NS.Command(l.ctx, "curl", "-sS", "--max-time", "5", "-w", " %{http_code}", "http://10.99.0.1/").CombinedOutput()
		return string(out), err
	}
	member := func(want string) func() (bool, error) {
		return func() (bool, error) {
			b, err := l.ctl.API().Balancer(l.ctx)
			if err != nil {
				return false, nil
			}
			if want == "" {
				return len(b.Members) == 0, nil
			}
			return len(b.Members) == 1 && b.Members[0].Node == "d1" && b.Members[0].State == want, nil
		}
	}
	l.waitFor("d1 up in the balancer", time.Minute, member("up"))
	if out, err := viaBalancer(); err != nil || out != page+" 200" {
		t.Errorf("web: GET through the balancer = %q, %v", out, err)
	}

	// web → db, live.
	t0 = time.Now()
	out := l.pictl("role", "set", "d1", "db", "--wait", "--timeout", "5m")
	took := time.Since(t0)
	t.Logf("e2e: role set d1 db --wait (%v):\n%s", took.Round(time.Millisecond), out)
	if !strings.Contains(out, "d1: db active") {
		t.Fatalf("role set db: %s", out)
	}
	if out, err := get(); err == nil {
		t.Errorf("nginx still answers on a db node: %q", out)
	}
	if greet, err := mysqlGreeting(l, addr); err != nil || !strings.Contains(greet, "MariaDB") {
		t.Errorf("db: no MariaDB greeting on 3306: %q, %v", greet, err)
	}
	units = unitStates(t, l, g, seen)
	t.Logf("e2e: db units: %v", units)
	if units["mariadb.service"] != "active" || units["nginx.service"] == "active" || units["srv-www.mount"] == "active" {
		t.Errorf("db: unit states %v (the www volume must be unmounted)", units)
	}
	l.waitFor("d1 out of the balancer", time.Minute, member(""))
	if out, err := viaBalancer(); err != nil || !strings.HasSuffix(out, " 503") {
		t.Errorf("db: GET through the balancer with no web node = %q, %v (want 503)", out, err)
	}

	// db → web, live.
	t0 = time.Now()
	out = l.pictl("role", "set", "d1", "web", "--wait", "--timeout", "5m")
	t.Logf("e2e: role set d1 web --wait (%v):\n%s", time.Since(t0).Round(time.Millisecond), out)
	if !strings.Contains(out, "d1: web active") {
		t.Fatalf("role set web: %s", out)
	}
	if out, err := get(); err != nil || out != page {
		t.Errorf("web again: GET :8000 = %q, %v", out, err)
	}
	l.waitFor("d1 back in the balancer", time.Minute, member("up"))
	if out, err := viaBalancer(); err != nil || out != page+" 200" {
		t.Errorf("web again: GET through the balancer = %q, %v", out, err)
	}
	t.Logf("pictl lb status:\n%s", l.pictl("lb", "status"))
	if _, err := mysqlGreeting(l, addr); err == nil {
		t.Errorf("MariaDB still answers on a web node")
	}

	badInput(t, l, get, page)

	// web → db by reboot: the agent reboots the guest (QEMU runs with
	// -no-reboot, so it ends and is powered on again), which boots
	// straight into db, its default.target.
	t0 = time.Now()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := l.ctl.Run(l.ctx, "role", "set", "d1", "db", "--reboot", "--wait", "--timeout", "10m")
		done <- result{out, err}
	}()
	if r := g.Wait(); r.Panic != "" {
		t.Fatalf("guest panicked instead of rebooting:\n%s", r.Tail(60))
	}
	t.Logf("e2e: d1 went down for the reboot after %v", time.Since(t0).Round(time.Second))
	g = l.start("d1", macDebian, 15*time.Minute)
	defer g.Kill()
	var res result
	select {
	case res = <-done:
	case <-time.After(11 * time.Minute):
		t.Fatal("role set --reboot --wait never returned")
	}
	t.Logf("e2e: role set d1 db --reboot --wait (%v): %s %v", time.Since(t0).Round(time.Second), res.out, res.err)
	if res.err != nil || !strings.Contains(res.out, "d1: db active") {
		t.Fatalf("role set db --reboot: %q, %v\n%s", res.out, res.err, g.Snapshot().Tail(80))
	}
	if greet, err := mysqlGreeting(l, addr); err != nil || !strings.Contains(greet, "MariaDB") {
		t.Errorf("db after reboot: no MariaDB greeting on 3306: %q, %v", greet, err)
	}
	if out, err := get(); err == nil {
		t.Errorf("nginx answers on a db node after reboot: %q", out)
	}
	units = unitStates(t, l, g, 0)
	t.Logf("e2e: db units after reboot: %v", units)
	if units["mariadb.service"] != "active" || units["nginx.service"] == "active" || units["srv-www.mount"] == "active" {
		t.Errorf("db after reboot: unit states %v", units)
	}
	t.Logf("pictl node ls:\n%s", l.pictl("node", "ls"))
	if t.Failed() {
		t.Logf("--- console tail:\n%s", g.Snapshot().Tail(200))
	}
}

// unitsLater prints, once systemd has no job left (the switch that ran
// the marker has settled), the states of the role services and the www
// mount.
const unitsLater = `systemd-run --quiet --no-block --on-active=2 /bin/sh -c 'while systemctl list-jobs --no-legend | grep -q .; do sleep 1; done; echo "PXE-STAGE units $(systemctl is-active nginx.service mariadb.service mariadb.socket srv-www.mount | tr "\n" " ")" > /dev/ttyS0'`

var unitNames = []string{"nginx.service", "mariadb.service", "mariadb.socket", "srv-www.mount"}

func countUnitLines(g *vm.Guest) int {
	n := 0
	for _, st := range g.Snapshot().Stages {
		if st.Name == "units" {
			n++
		}
	}
	return n
}

// unitStates waits for the guest's units line after the first `after`
// ones and returns unit → state.
func unitStates(t *testing.T, l *lab, g *vm.Guest, after int) map[string]string {
	t.Helper()
	var detail string
	l.waitFor("the guest's unit states", 90*time.Second, func() (bool, error) {
		n := 0
		for _, st := range g.Snapshot().Stages {
			if st.Name == "units" {
				if n++; n > after {
					detail = st.Detail
				}
			}
		}
		return detail != "", nil
	})
	states := map[string]string{}
	for i, f := range strings.Fields(detail) {
		if i < len(unitNames) {
			states[unitNames[i]] = f
		}
	}
	return states
}

// badInput asks for roles that cannot be applied while d1 runs web: each
// gives a one-line reason, and d1 keeps serving as web.
func badInput(t *testing.T, l *lab, get func() (string, error), page string) {
	rolesDir := filepath.Join(filepath.Dir(l.ctl.Config), "roles")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(rolesDir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		what, role, want string
		wait             bool
	}{
		{"unknown role", "nosuch", `unknown role "nosuch"`, false},
		{"syntax error", "broken", "broken.yaml:2:1: YAML syntax error", false},
		{"template error", "tmplbad", "refused, the node keeps role web: render role tmplbad for node d1: ", true},
		{"missing package", "cowsay", "pictl image exec debian -- apt-get install -y cowsay", true},
	} {
		if tc.role == "broken" {
			write("broken.yaml", "extends: web\nunits: [x\n")
		}
		args := []string{"role", "set", "d1", tc.role}
		if tc.wait {
			args = append(args, "--wait", "--timeout", "2m")
		}
		out, err := l.ctl.Run(l.ctx, args...)
		if tc.role == "broken" {
			os.Remove(filepath.Join(rolesDir, "broken.yaml"))
		}
		msg := strings.TrimSpace(out)
		if err != nil {
			msg = strings.TrimSpace(err.Error())
		}
		t.Logf("e2e: bad input, %s: %s", tc.what, msg)
		if err == nil || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: role set d1 %s = %q, %v; want an error with %q", tc.what, tc.role, out, err, tc.want)
		}
		if out, err := get(); err != nil || out != page {
			t.Errorf("after %s: GET :8000 = %q, %v", tc.what, out, err)
		}
	}
	// A node whose agent never reports (d2 is never powered on).
	l.pictl("node", "add", "d2", "--mac", "02:00:00:00:00:d2", "--image", "debian", "--ip", "10.99.0.45")
	_, err := l.ctl.Run(l.ctx, "role", "set", "d2", "db", "--wait", "--timeout", "5s")
	t.Logf("e2e: bad input, agent never reports: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no final report within 5s (now: agent not seen)") {
		t.Errorf("agent never reports: %v", err)
	}
	// d1 back to web: its layer never changed, so this returns at once.
	if out := l.pictl("role", "set", "d1", "web", "--wait", "--timeout", "2m"); !strings.Contains(out, "d1: web active") {
		t.Errorf("back to web after the refusals: %s", out)
	}
}

var printable = regexp.MustCompile(`[[:print:]]+`)

// mysqlGreeting connects to port 3306 from inside the lab's namespace and
// returns the printable part of the server's handshake packet.
func mysqlGreeting(l *lab, addr string) (string, error) {
	var greet string
	err := l.net.NS.Do(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "3306"), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		n, err := bufio.NewReader(c).Read(buf)
		if err != nil {
			return err
		}
		greet = strings.Join(printable.FindAllString(string(buf[:n]), -1), " ")
		return nil
	})
	return greet, err
}
