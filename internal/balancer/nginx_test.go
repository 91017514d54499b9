package balancer

import (
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/testnginx"
)

// startNginx runs a real nginx (nginx-light, in the Makefile's DEBS)
// serving a small page on a loopback port.
func startNginx(t *testing.T) (addr string, cmd *exec.Cmd) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	return addr, testnginx.Start(t, addr, "hello from nginx\n")
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
