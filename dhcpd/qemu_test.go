package dhcpd

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/testnet"
)

// QEMU's own iPXE ROM boots against the server: it must get its address
// and ask TFTP for boot.ipxe. With option 175.176 and the RA responder it
// does so without the ~3 s ProxyDHCP wait and the ~13 s IPv6 wait (the
// time is logged, not asserted: the machine is shared).
func TestQEMUIPXEBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86")
	}
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		if _, err := os.Stat("/usr/share/qemu/pxe-virtio.rom"); err != nil {
			t.Skip("needs ipxe-qemu")
		}
	}
	l := newLab(t, "10.99.0.1/24")
	l.srv.Tap("tap0", "br0")
	l.srv.MustExec("sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0", "net.ipv6.conf.br0.disable_ipv6=0")
	nodes := newFakeNodes().add("52:54:00:12:34:56", Node{Name: "vm1", IP: netip.MustParseAddr("10.99.0.21"), Netboot: true})
	cfg := fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199")
	cfg.Interfaces = []string{"br0"}
	l.serve(cfg, nodes, nil)
	ra, err := NewRAResponder([]string{"br0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.srv.Do(ra.Listen); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ra.Serve(ctx)

	// A bare TFTP listener: the first RRQ is all this test needs.
	var tftp *net.UDPConn
	if err := l.srv.Do(func() error {
		var err error
		tftp, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 69})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tftp.Close()

	qctx, qcancel := context.WithTimeout(ctx, 90*time.Second)
	defer qcancel()
	qemu := l.srv.Command(qctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-boot", "n", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56")
	console := &testnet.SafeBuffer{}
	qemu.Stdout, qemu.Stderr = console, console
	start := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { qemu.Process.Kill(); qemu.Wait() }()

	tftp.SetReadDeadline(time.Now().Add(80 * time.Second))
	buf := make([]byte, 512)
	n, from, err := tftp.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no TFTP request from iPXE: %v\nconsole:\n%s", err, console.String())
	}
	took := time.Since(start)
	if n < 4 || buf[1] != 1 || !strings.HasPrefix(string(buf[2:n]), "boot.ipxe\x00") {
		t.Fatalf("unexpected TFTP packet %q", buf[:n])
	}
	if got := from.(*net.UDPAddr).IP.String(); got != "10.99.0.21" {
		t.Errorf("RRQ from %s, want the reserved 10.99.0.21", got)
	}
	t.Logf("iPXE asked for boot.ipxe %.1f s after QEMU started (RAs sent: %d)", took.Seconds(), ra.Answers())
	if ra.Answers() == 0 {
		t.Error("iPXE sent no router solicitation, or it was not answered")
	}
}
