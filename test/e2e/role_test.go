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
	// isolate): let it also say which role services run.
	marker := strings.Replace(DebianMarkerScript, "\nsync\n", "\necho \"PXE-STAGE units $(systemctl is-active nginx.service mariadb.service mariadb.socket srv-www.mount | tr '\\n' ' ')\"\nsync\n", 1)
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
	t.Logf("pictl node ls:\n%s", l.pictl("node", "ls"))
	if t.Failed() {
		t.Logf("--- console tail:\n%s", g.Snapshot().Tail(200))
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
