package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// network is the demo's private network: a namespace holding a bridge with
// the controller's address and one tap per machine. Nothing in it routes
// anywhere else.
type network struct {
	Name   string
	Bridge string
	Taps   []string
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// createNetwork makes namespace name with bridge br0 at addr and taps
// tap0..tap<taps-1>. IPv6 is on for br0 only, so pictl can answer the router
// solicitations iPXE waits for.
func createNetwork(name, addr string, taps int) (*network, error) {
	n := &network{Name: name, Bridge: "br0"}
	steps := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		{"ip", "-n", name, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"ip", "-n", name, "addr", "add", addr, "dev", "br0"},
		{"ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0", "net.ipv6.conf.br0.disable_ipv6=0"},
		{"ip", "-n", name, "link", "set", "br0", "up"},
	}
	for i := range taps {
		tap := "tap" + strconv.Itoa(i)
		n.Taps = append(n.Taps, tap)
		steps = append(steps,
			[]string{"ip", "-n", name, "tuntap", "add", "dev", tap, "mode", "tap"},
			[]string{"ip", "-n", name, "link", "set", tap, "master", "br0"},
			[]string{"ip", "-n", name, "link", "set", tap, "up"})
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return n, err
		}
	}
	return n, nil
}

// pidsIn lists the processes running inside namespace name.
func pidsIn(name string) []int {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids
}

// removeNetwork ends every process still inside the namespace — only the
// demo's own pictl and QEMU run there — by PID, first with SIGTERM, and
// deletes the namespace (which removes its bridge and taps).
func removeNetwork(name string) error {
	if !netnsExists(name) {
		return nil
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pids := pidsIn(name)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, sig)
		}
		for i := 0; i < 50 && len(pidsIn(name)) > 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return run("ip", "netns", "del", name)
}
