package balancer

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startNginx runs a real nginx (nginx-light, in the Makefile's DEBS)
// serving a small page on a loopback port.
func startNginx(t *testing.T) (addr string, cmd *exec.Cmd) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not installed (make deps)")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from nginx\n"), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
error_log %[1]s/error.log error;
pid %[1]s/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  server { listen %[2]s; root %[1]s; }
}
`, dir, addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "-c", "nginx.conf", "-p", dir, "-e", dir+"/error.log")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "nginx listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, cmd
}

// TestKillMemberUnderLoad kills -9 one of two nginx members while GETs
// run: none may fail, and the dead member must leave rotation.
func TestKillMemberUnderLoad(t *testing.T) {
	addrA, cmdA := startNginx(t)
	addrB, _ := startNginx(t)
	const interval, fall = 100 * time.Millisecond, 3
	b, addr := startBalancer(t, Config{Health: HealthCheck{Interval: interval, Fall: fall, Rise: 2}})
	b.SetMembers([]Member{memberOf(t, "a", addrA), memberOf(t, "b", addrB)})
	waitFor(t, "both members up", func() bool {
		return memberStatus(b, "a").State == "up" && memberStatus(b, "b").State == "up"
	})
	load := startLoad(t, "http://"+addr+"/index.html", 8)
	waitFor(t, "load on a", func() bool { return memberStatus(b, "a").Requests > 200 })
	killed := time.Now()
	cmdA.Process.Kill()
	waitFor(t, "a out of rotation", func() bool { s := memberStatus(b, "a").State; return s == "down" || s == "ejected" })
	out := time.Since(killed)
	waitFor(t, "a down by active checks", func() bool { return memberStatus(b, "a").State == "down" })
	down := time.Since(killed)
	before := load.ok.Load()
	waitFor(t, "more load", func() bool { return load.ok.Load() > before+500 })
	load.check(t)
	t.Logf("a out of rotation %v after kill -9 (passive), down by checks after %v; fall×interval = %v", out, down, fall*interval)
}
