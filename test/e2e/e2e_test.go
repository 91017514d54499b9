package e2e

import (
	"cmp"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/testnet"
	"github.com/pictl/pictl/test/vm"
)

// Guest MACs: QEMU's 52:54:00 prefix, one per role in the tests.
const (
	macFull       = "52:54:00:e2:e0:01"
	macFull2      = "52:54:00:e2:e0:05"
	macProxy      = "52:54:00:e2:e0:02"
	macDiscovered = "52:54:00:e2:e0:03"
	macDebian     = "52:54:00:e2:e0:04"
)

const bootTimeout = 4 * time.Minute

// Full DHCP mode, two machines at once: pictl hands out the addresses (n1
// from the pool, n2 its reserved one), boot.ipxe, kernel and initrd, and
// each node's NFS root; n1 runs the recipe's filesystem checks on it, and
// each writes into its own layer, which the other must not see. Then
// `pictl node ls` shows each node's address, boot stage and time, and
// /metrics has DHCP, TFTP and NFS series. Finally the controller restarts
// and n1 boots again: same address (the lease survived), and its own layer
// kept the first boot's write.
func TestPXEBootFullDHCP(t *testing.T) {
	l := newLab(t, "e2efull", "full")
	l.importBusybox("busybox")
	l.pictl("node", "add", "n1", "--mac", macFull, "--image", "busybox", "--cmdline", NodeCmdline+" "+checksFlag)
	l.pictl("node", "add", "n2", "--mac", macFull2, "--image", "busybox", "--ip", "10.99.0.12", "--cmdline", NodeCmdline)
	l.serve()
	before := time.Now()

	rs := l.bootAll("NETBOOT-OK", bootTimeout, "n1", macFull, "n2", macFull2)

	if rs[0].ChecksOK < len(vm.StandardChecks())-2 {
		t.Errorf("n1: only %d checks passed; the standard checks did not run?", rs[0].ChecksOK)
	}
	ips := map[string]string{}
	for i, name := range []string{"n1", "n2"} {
		r := rs[i]
		bound := stageDetail(t, r, "dhcp-bound")
		if field(bound, "server") != "10.99.0.1" {
			t.Fatalf("%s: initramfs lease not from pictl: %q", name, bound)
		}
		ips[name] = field(bound, "ip")
		if m := stageDetail(t, r, "nfs-mount-start"); !strings.HasPrefix(m, "10.99.0.1:/nodes/"+name+" ") {
			t.Errorf("%s: root mounted from %q, want 10.99.0.1:/nodes/%s", name, m, name)
		}
		if boots, others := ownLayer(t, r); boots != "1" || others != "0" {
			t.Errorf("%s: own layer after the first boot has %s boot(s), %s from other nodes; want 1 and 0", name, boots, others)
		}
	}
	if ip, err := netip.ParseAddr(ips["n1"]); err != nil || ip.Less(netip.MustParseAddr("10.99.0.100")) || netip.MustParseAddr("10.99.0.199").Less(ip) {
		t.Errorf("n1 address %q outside pictl's pool .100-.199", ips["n1"])
	}
	if ips["n2"] != "10.99.0.12" {
		t.Errorf("n2 address %q, reserved 10.99.0.12", ips["n2"])
	}
	if !strings.Contains(l.ctl.Log(), "answered router solicitation") {
		t.Errorf("pictl's RA responder answered no router solicitation (iPXE then waits ~13 s)")
	}

	// (d) what `pictl node ls` shows after the boot.
	table := l.pictl("node", "ls")
	t.Logf("pictl node ls:\n%s", table)
	rows := l.nodes()
	if len(rows) != 2 {
		t.Fatalf("node ls: %+v", rows)
	}
	for _, row := range rows {
		rt := row.Runtime
		if rt == nil {
			t.Errorf("%s: no runtime facts", row.Name)
			continue
		}
		if addr := cmp.Or(rt.LeaseIP, row.IP); addr != ips[row.Name] {
			t.Errorf("%s: node ls address %q (lease %q, reserved %q), guest has %q", row.Name, addr, rt.LeaseIP, row.IP, ips[row.Name])
		}
		if rt.BootStage == "" || rt.BootStageAt.Before(before) {
			t.Errorf("%s: node ls boot stage %q at %v (boot started %v)", row.Name, rt.BootStage, rt.BootStageAt, before)
		}
		if rt.LastSeen.Before(before) {
			t.Errorf("%s: node ls last seen %v, before the boot", row.Name, rt.LastSeen)
		}
		if !strings.Contains(table, ips[row.Name]) || !strings.Contains(table, rt.BootStage) || !strings.Contains(table, "ago") {
			t.Errorf("node ls table lacks %s's address, stage or time:\n%s", row.Name, table)
		}
	}

	metrics := l.metrics()
	for _, series := range []string{"pictl_dhcpd_requests_total", "pictl_tftp_requests_total", "pictl_tftp_sent_bytes_total", "pictl_nfsd_mounts_total"} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics has no %s series", series)
		}
	}
	// iPXE takes windowed transfers: boot.ipxe goes lock-step and teaches
	// tftpd the address, each node's kernel and initrd go windowed.
	if m := regexp.MustCompile(`(?m)^pictl_tftp_windowed_requests_total (\d+)$`).FindStringSubmatch(metrics); m == nil || m[1] != "4" {
		t.Errorf("windowed TFTP requests %v, want 4 (kernel and initrd of n1 and n2)", m)
	}

	// Restart: nothing may be lost.
	if took, graceful := l.ctl.Stop(); !graceful {
		t.Fatalf("pictl serve did not stop on SIGTERM within 10 s")
	} else {
		t.Logf("e2e: pictl serve stopped in %v", took.Round(time.Millisecond))
	}
	l.pictl("node", "set", "n1", "--cmdline", NodeCmdline) // no checks this time
	l.serve()
	r := l.boot("n1", macFull, "NETBOOT-OK", bootTimeout)
	if ip := field(stageDetail(t, r, "dhcp-bound"), "ip"); ip != ips["n1"] {
		t.Errorf("n1 got %s after the controller restarted, %s before: the lease was lost", ip, ips["n1"])
	}
	if boots, others := ownLayer(t, r); boots != "2" || others != "0" {
		t.Errorf("n1: own layer after the second boot has %s boot(s), %s from other nodes; want 2 and 0", boots, others)
	}
}

// Proxy mode: a separate DHCP server (busybox udhcpd, the "home router" at
// 10.99.0.254, pool .150-.160) hands out the addresses; pictl answers only
// the netboot part and still serves TFTP and NFS.
func TestPXEBootProxyDHCP(t *testing.T) {
	l := newLab(t, "e2eproxy", "proxy")
	router := testnet.New(t, "e2ertr")
	l.net.NS.Veth("vrouter", "br0", router, "eth0", "10.99.0.254/24")
	udhcpd(t, router, "10.99.0.150", "10.99.0.160")

	l.importBusybox("busybox")
	l.pictl("node", "add", "p1", "--mac", macProxy, "--image", "busybox", "--cmdline", NodeCmdline)
	l.serve()
	before := time.Now()

	r := l.boot("p1", macProxy, "NETBOOT-OK", bootTimeout)

	bound := stageDetail(t, r, "dhcp-bound")
	ip := field(bound, "ip")
	if field(bound, "server") != "10.99.0.254" || (!strings.HasPrefix(ip, "10.99.0.15") && ip != "10.99.0.160") {
		t.Errorf("initramfs lease %q: want one from the router's pool", bound)
	}
	if ipxe, ok := r.FirstLine("net0: 10.99.0."); !ok || (!strings.Contains(ipxe.Text, "10.99.0.15") && !strings.Contains(ipxe.Text, "10.99.0.160")) {
		t.Errorf("iPXE's address %q is not from the router's pool", ipxe.Text)
	}
	if m := stageDetail(t, r, "nfs-mount-start"); !strings.HasPrefix(m, "10.99.0.1:/nodes/p1 ") {
		t.Errorf("root mounted from %q, want 10.99.0.1:/nodes/p1", m)
	}
	if boots, others := ownLayer(t, r); boots != "1" || others != "0" {
		t.Errorf("own layer has %s boot(s), %s from other nodes; want 1 and 0", boots, others)
	}

	table := l.pictl("node", "ls")
	t.Logf("pictl node ls:\n%s", table)
	rows := l.nodes()
	if len(rows) != 1 || rows[0].Runtime == nil {
		t.Fatalf("node ls: %+v", rows)
	}
	rt := rows[0].Runtime
	if rt.BootStage == "" || rt.BootStageAt.Before(before) {
		t.Errorf("node ls boot stage %q at %v (boot started %v)", rt.BootStage, rt.BootStageAt, before)
	}
	if rows[0].IP != ip && rt.Address != ip {
		// In proxy mode pictl grants no lease; the controller still knows
		// the address (the NFS mount, the TFTP client, the neighbour table).
		t.Errorf("proxy mode: pictl node ls shows no address for p1 (guest has %s from the router): ip=%q address=%q", ip, rows[0].IP, rt.Address)
	}
}

// udhcpd runs busybox udhcpd on ns's eth0 with a pool first-last.
func udhcpd(t *testing.T, ns *testnet.NS, first, last string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "udhcpd.conf")
	leases := filepath.Join(dir, "udhcpd.leases")
	if err := os.WriteFile(leases, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := "start " + first + "\nend " + last + "\ninterface eth0\nlease_file " + leases +
		"\npidfile " + filepath.Join(dir, "pid") + "\noption subnet 255.255.255.0\noption lease 600\n"
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// -a 50: busybox pings an address for 2 s before offering it by default.
	_, log := ns.Start("busybox", "udhcpd", "-f", "-a", "50", conf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- udhcpd log:\n%s", log.String())
		}
	})
}

// A machine pictl does not know is recorded as discovered and not booted
// (discovery: record); after `pictl node add NAME --from MAC` it boots.
func TestDiscoveredThenAdopted(t *testing.T) {
	l := newLab(t, "e2edisc", "full")
	l.importBusybox("busybox")
	l.serve()

	g := l.start("stranger", macDiscovered, 90*time.Second)
	var found api.Discovered
	l.waitFor("the unknown guest in pictl node ls --discovered", 60*time.Second, func() (bool, error) {
		for _, d := range l.discovered() {
			if d.MAC == macDiscovered {
				found = d
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("discovered: %+v", found)
	t.Logf("pictl node ls --discovered:\n%s", l.pictl("node", "ls", "--discovered"))
	// iPXE keeps asking for a few seconds; give pictl every chance to
	// (wrongly) answer with a boot file before looking.
	time.Sleep(8 * time.Second)
	snap := g.Snapshot()
	g.Kill()
	for _, bad := range []string{"boot.ipxe", "vmlinuz", "PXE-STAGE"} {
		if l, ok := snap.FirstLine(bad); ok {
			t.Errorf("unknown guest got as far as %q: %s", bad, l)
		}
	}
	for _, line := range strings.Split(l.ctl.Log(), "\n") {
		if strings.Contains(line, "tftp transfer") {
			t.Errorf("pictl served a file before any node exists: %s", line)
		}
	}
	if rows := l.nodes(); len(rows) != 0 {
		t.Errorf("discovery added nodes: %+v", rows)
	}

	l.pictl("node", "add", "adopted", "--from", macDiscovered, "--image", "busybox", "--cmdline", NodeCmdline)
	l.waitForNode("adopted")
	r := l.boot("adopted", macDiscovered, "NETBOOT-OK", bootTimeout)
	if m := stageDetail(t, r, "nfs-mount-start"); !strings.HasPrefix(m, "10.99.0.1:/nodes/adopted ") {
		t.Errorf("root mounted from %q, want 10.99.0.1:/nodes/adopted", m)
	}
	if boots, others := ownLayer(t, r); boots != "1" || others != "0" {
		t.Errorf("own layer has %s boot(s), %s from other nodes; want 1 and 0", boots, others)
	}
	if slices.ContainsFunc(l.discovered(), func(d api.Discovered) bool { return d.MAC == macDiscovered }) {
		t.Errorf("adopted MAC still listed as discovered")
	}
	t.Logf("pictl node ls:\n%s", l.pictl("node", "ls"))
}

// A Debian bookworm image (debootstrap minbase + systemd-sysv, imported
// from a directory) boots systemd to multi-user.target on its NFS root.
func TestPXEBootDebianSystemd(t *testing.T) {
	if os.Getenv("PICTL_E2E_NO_DEBIAN") != "" {
		t.Skip("PICTL_E2E_NO_DEBIAN is set")
	}
	l := newLab(t, "e2edeb", "full")
	tarPath, err := EnsureDebianTar(l.ctx, t.Logf)
	if err != nil {
		t.Skipf("Debian image unavailable: %v", err)
	}
	src := filepath.Join(t.TempDir(), "debian")
	t0 := time.Now()
	if err := DebianImageSource(l.ctx, src, tarPath, l.art); err != nil {
		t.Fatal(err)
	}
	t.Logf("e2e: Debian image directory unpacked in %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	out := l.pictl("image", "import", "debian", src)
	t.Logf("e2e: pictl image import debian (%v): %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(out))
	l.pictl("node", "add", "d1", "--mac", macDebian, "--image", "debian",
		"--cmdline", "console=ttyS0 panic=-1 quiet systemd.show_status=1")
	l.serve()

	r := l.boot("d1", macDebian, "multi-user", 6*time.Minute)
	if _, ok := r.Stage("multi-user"); !ok {
		t.Errorf("no multi-user stage")
	}
	for _, line := range r.Lines {
		if strings.Contains(line.Text, "FAILED-UNIT") {
			t.Logf("failed unit: %s", line.Text)
		}
	}
	if m := stageDetail(t, r, "nfs-mount-start"); !strings.HasPrefix(m, "10.99.0.1:/nodes/d1 ") {
		t.Errorf("root mounted from %q, want 10.99.0.1:/nodes/d1", m)
	}
	t.Logf("pictl node ls:\n%s", l.pictl("node", "ls"))
}
