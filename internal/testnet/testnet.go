// Package testnet builds private network namespaces for integration tests:
// a namespace per test host, bridges, veth pairs and taps, all created by the
// test and removed by name when it ends. Nothing here routes to any address
// outside the namespaces it creates.
//
// Tests using it need root (CAP_NET_ADMIN); Require skips otherwise, which
// only happens on developer machines: CI runs as root.
package testnet

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Require skips the test unless it can create network namespaces.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

// NS is a network namespace created for a test.
type NS struct {
	Name string
	t    testing.TB
}

// New creates a namespace named pt-<tag>-<random> with lo up, and registers
// its removal by name (killing nothing: Start's processes are killed by PID).
func New(t testing.TB, tag string) *NS {
	t.Helper()
	Require(t)
	name := fmt.Sprintf("pt-%s-%08x", tag, rand.Uint32())
	if len(name) > 40 {
		name = name[:40]
	}
	mustRun(t, "ip", "netns", "add", name)
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns.MustIP("link", "set", "lo", "up")
	// IPv6 off unless a test turns it on: no router solicitations or DAD
	// traffic to wait for.
	ns.MustExec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return ns
}

// MustIP runs `ip -n NS args...`.
func (ns *NS) MustIP(args ...string) {
	ns.t.Helper()
	mustRun(ns.t, "ip", append([]string{"-n", ns.Name}, args...)...)
}

// MustExec runs a command inside the namespace and fails the test on error.
func (ns *NS) MustExec(name string, args ...string) string {
	ns.t.Helper()
	out, err := ns.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		ns.t.Fatalf("in netns %s: %s %s: %v\n%s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Start starts a long-running command inside the namespace, with output
// collected, and kills it (by PID) when the test ends. The returned buffer
// holds its combined output.
func (ns *NS) Start(name string, args ...string) (*exec.Cmd, *SafeBuffer) {
	ns.t.Helper()
	cmd := ns.Command(context.Background(), name, args...)
	buf := &SafeBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		ns.t.Fatalf("start %s in %s: %v", name, ns.Name, err)
	}
	ns.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, buf
}

// Bridge creates a bridge with the given address (CIDR, may be empty) and
// brings it up; STP and forward delay are off so ports forward at once.
func (ns *NS) Bridge(name, cidr string) {
	ns.t.Helper()
	ns.MustIP("link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state", "0")
	if cidr != "" {
		ns.MustIP("addr", "add", cidr, "dev", name)
	}
	ns.MustIP("link", "set", name, "up")
}

// Tap creates a tap device enslaved to bridge (for QEMU's -netdev tap).
func (ns *NS) Tap(name, bridge string) {
	ns.t.Helper()
	ns.MustIP("tuntap", "add", "dev", name, "mode", "tap")
	ns.MustIP("link", "set", name, "master", bridge)
	ns.MustIP("link", "set", name, "up")
}

// Veth connects this namespace to peer with a veth pair: local end named
// local (enslaved to bridge if bridge != ""), remote end named remote inside
// peer with address remoteCIDR (may be empty). Both ends are brought up.
func (ns *NS) Veth(local, bridge string, peer *NS, remote, remoteCIDR string) {
	ns.t.Helper()
	ns.MustIP("link", "add", local, "type", "veth", "peer", "name", remote, "netns", peer.Name)
	if bridge != "" {
		ns.MustIP("link", "set", local, "master", bridge)
	}
	ns.MustIP("link", "set", local, "up")
	if remoteCIDR != "" {
		peer.MustIP("addr", "add", remoteCIDR, "dev", remote)
	}
	peer.MustIP("link", "set", remote, "up")
}

// Do runs fn with the calling goroutine's OS thread switched into the
// namespace. Sockets opened inside fn stay in the namespace after Do returns,
// so an in-process server can listen there while its goroutines run on any
// thread. fn must not start goroutines that open sockets.
func (ns *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", ns.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", ns.Name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the wrong namespace: leave it locked so
		// the runtime discards it when the goroutine exits.
		return fmt.Errorf("leave netns %s: %w (fn: %v)", ns.Name, err, fnErr)
	}
	runtime.UnlockOSThread()
	return fnErr
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// SafeBuffer is a bytes.Buffer safe for a process writing while a test reads.
type SafeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SafeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SafeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
