package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The bench's network is a switch and its ports: namespace
// pictl-storm-sw holds bridge br0; the servers run in pictl-storm-srv
// behind one NIC, eth0 (serverCIDR), a veth into br0; every Pi has a
// namespace pictl-storm-pNNN whose eth0 (the Pi's MAC) is a veth into
// br0. So the server sees one interface, as on a real boot server, not a
// hundred bridge ports. Fixed names let a run remove what a killed run
// left behind. Nothing routes out of these namespaces.
const (
	nsPrefix   = "pictl-storm-"
	serverNS   = nsPrefix + "srv"
	switchNS   = nsPrefix + "sw"
	bridge     = "br0"
	serverIf   = "eth0"
	serverIP   = "10.77.0.1"
	serverCIDR = serverIP + "/16"
	prefixLen  = 16
)

func piNS(i int) string { return fmt.Sprintf("%sp%03d", nsPrefix, i) }

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipBatch runs `ip [-n ns] -batch -` with the lines.
func ipBatch(ns string, lines []string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ourNamespaces lists the namespaces a storm run creates, by name prefix.
func ourNamespaces() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// teardown deletes every namespace of ours by name (the veths and the
// bridge go with them). Processes inside are the caller's to stop first.
func teardown() error {
	var lines []string
	for _, n := range ourNamespaces() {
		lines = append(lines, "netns del "+n)
	}
	if len(lines) == 0 {
		return nil
	}
	return ipBatch("", lines)
}

// buildNetwork creates the switch, the server namespace with its NIC and
// one namespace per Pi, eth0 carrying the Pi's MAC. IPv6 is off
// everywhere: no router solicitations or DAD in the measurement.
func buildNetwork(pis []*pi) error {
	lines := []string{"netns add " + serverNS, "netns add " + switchNS}
	for _, p := range pis {
		lines = append(lines, "netns add "+p.ns)
	}
	if err := ipBatch("", lines); err != nil {
		return err
	}
	lines = []string{fmt.Sprintf("link add %s netns %s type veth peer name vsrv netns %s", serverIf, serverNS, switchNS)}
	for _, p := range pis {
		// Created in our namespace and moved at once into both ends'.
		lines = append(lines, fmt.Sprintf("link add %s netns %s type veth peer name eth0 netns %s address %s",
			p.hostVeth, switchNS, p.ns, p.mac))
	}
	if err := ipBatch("", lines); err != nil {
		return err
	}
	sw := []string{
		"link set lo up",
		"link add " + bridge + " type bridge forward_delay 0 stp_state 0",
		"link set " + bridge + " up",
		"link set vsrv master " + bridge + " up",
	}
	for _, p := range pis {
		sw = append(sw, fmt.Sprintf("link set %s master %s up", p.hostVeth, bridge))
	}
	for _, ns := range []string{serverNS, switchNS} {
		if err := noIPv6(ns); err != nil {
			return err
		}
	}
	if err := ipBatch(switchNS, sw); err != nil {
		return err
	}
	if err := bridgeNoNetfilter(switchNS); err != nil {
		return err
	}
	if err := ipBatch(serverNS, []string{"link set lo up", "addr add " + serverCIDR + " dev " + serverIf, "link set " + serverIf + " up"}); err != nil {
		return err
	}
	for _, p := range pis {
		if err := noIPv6(p.ns); err != nil {
			return err
		}
		if err := ipBatch(p.ns, []string{"link set lo up", "link set eth0 up"}); err != nil {
			return err
		}
	}
	return nil
}

func noIPv6(ns string) error {
	return inNetns(ns, func() error {
		for _, k := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return fmt.Errorf("netns %s: disable ipv6: %w", ns, err)
			}
		}
		return nil
	})
}

// bridgeNoNetfilter keeps the switch a plain switch. Where br_netfilter is
// loaded (Docker hosts), every bridged frame would otherwise also pass the
// iptables, ip6tables and arptables hooks of the switch namespace: per
// packet work a real switch does not do, paid on the CPUs the servers and
// the simulator share. The settings are per namespace; absent without
// br_netfilter.
func bridgeNoNetfilter(ns string) error {
	return inNetns(ns, func() error {
		for _, k := range []string{"iptables", "ip6tables", "arptables"} {
			f := "/proc/sys/net/bridge/bridge-nf-call-" + k
			if err := os.WriteFile(f, []byte("0"), 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("netns %s: %s: %w", ns, f, err)
			}
		}
		return nil
	})
}

// resetNetwork makes every Pi power on afresh: no address, and no
// neighbour entries on either side from an earlier run.
func resetNetwork(pis []*pi) error {
	for _, p := range pis {
		if err := ipBatch(p.ns, []string{"addr flush dev eth0", "neigh flush dev eth0"}); err != nil {
			return err
		}
		p.cur = netip.Addr{}
	}
	return ipBatch(serverNS, []string{"neigh flush dev " + serverIf})
}

// inNetns runs fn on an OS thread switched into the named namespace.
// Sockets fn opens stay in that namespace for their life. If the thread
// cannot be switched back it is left locked, so Go retires it.
func inNetns(ns string, fn func() error) error {
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns back: %w (thread retired)", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialIn returns a dialer whose sockets are made in namespace ns and
// give up connecting at deadline.
func dialIn(ns string, deadline time.Time) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(ns, func() error {
			var err error
			d := net.Dialer{Deadline: deadline}
			c, err = d.Dial(network, addr)
			return err
		})
		return c, err
	}
}

// setAddr adds (or with add false removes) ip/prefixLen on interface
// ifindex of namespace ns over rtnetlink: what ip addr replace/del do,
// without a process per call in the middle of a storm.
func setAddr(ns string, ifindex int, ip netip.Addr, add bool) error {
	return inNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		typ, flags := uint16(unix.RTM_DELADDR), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		if add {
			typ, flags = unix.RTM_NEWADDR, flags|unix.NLM_F_CREATE|unix.NLM_F_REPLACE
		}
		a := ip.As4()
		msg := make([]byte, 0, 40)
		msg = binary.NativeEndian.AppendUint32(msg, 40) // nlmsghdr: length
		msg = binary.NativeEndian.AppendUint16(msg, typ)
		msg = binary.NativeEndian.AppendUint16(msg, flags)
		msg = binary.NativeEndian.AppendUint32(msg, 1)   // seq
		msg = binary.NativeEndian.AppendUint32(msg, 0)   // pid
		msg = append(msg, unix.AF_INET, prefixLen, 0, 0) // ifaddrmsg
		msg = binary.NativeEndian.AppendUint32(msg, uint32(ifindex))
		for _, attr := range []uint16{unix.IFA_LOCAL, unix.IFA_ADDRESS} {
			msg = binary.NativeEndian.AppendUint16(msg, 8)
			msg = binary.NativeEndian.AppendUint16(msg, attr)
			msg = append(msg, a[:]...)
		}
		if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		buf := make([]byte, 4096)
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		if n < 20 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
			return fmt.Errorf("rtnetlink: unexpected answer (%d bytes)", n)
		}
		if e := int32(binary.NativeEndian.Uint32(buf[16:])); e != 0 {
			return fmt.Errorf("rtnetlink %s %s: %w", map[bool]string{true: "add", false: "del"}[add], ip, unix.Errno(-e))
		}
		return nil
	})
}
