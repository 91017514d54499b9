package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// PXE mode of the harness against known-good DHCP+TFTP (dnsmasq, as in the
// recipe) with the harness's router advertiser and the stand-in NFS server:
// SeaBIOS → iPXE ROM → DHCP → TFTP boot.ipxe, vmlinuz, initrd → initramfs
// DHCP (udhcpc) with root path option 17 → NFS root → NETBOOT-OK. The real
// servers replace dnsmasq in the end-to-end tests of test/.
func TestPXEBootStandInDnsmasq(t *testing.T) {
	n := NewNet(t, "vmpxe")
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("needs dnsmasq (Debian dnsmasq-base) as the stand-in DHCP+TFTP server")
	}
	a := PrepareT(t)
	root := rootfsDir(t, RootfsSpec{Checks: []Check{
		{Name: "dhcp-address", Script: `test "$PXE_ADDR_MODE" = dhcp && case "$PXE_IP" in 10.99.0.1[0-9][0-9]) ;; *) false ;; esac`},
		{Name: "root-from-option-17", Script: `grep -q "^10.99.0.1:/ / nfs " /proc/mounts`},
	}})
	serveGoNFS(t, n, root)

	tftp := filepath.Join(t.TempDir(), "tftp")
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{a.Vmlinuz: "vmlinuz", a.Initrd: "initrd.img"} {
		if err := linkOrCopy(src, filepath.Join(tftp, dst)); err != nil {
			t.Fatal(err)
		}
	}
	script := IPXEScript("vmlinuz", "initrd.img", KernelArgs{NFSPort: 2049})
	if err := os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ra := n.StartRouterAdvertiser()
	_, log := n.NS.Start(dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface="+n.Bridge, "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
		"--dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(t.TempDir(), "leases"), "--pid-file=",
		"--enable-tftp", "--tftp-root="+tftp,
		"--dhcp-match=set:ipxe,175", "--dhcp-boot=tag:ipxe,boot.ipxe",
		"--dhcp-option=17,10.99.0.1:/", "--dhcp-option=encap:175,176,1b",
		"--log-dhcp", "--log-facility=-")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", log.String())
		}
	})

	r := n.Boot(t, Machine{Name: "pxe0", Mode: PXEBoot})
	RequirePassed(t, r)
	t.Logf("%s", r.Summary())
	t.Logf("router advertisements sent: %d", ra.Sent())
	// Not "ipxe-downloaded": iPXE's last line before the kernel takes the
	// UART over is sometimes cut short.
	for _, stage := range []string{"ipxe-script-start", "initrd-start", "dhcp-bound", "nfs-mounted", "userspace"} {
		if _, ok := r.Stage(stage); !ok {
			t.Errorf("no PXE-STAGE %s on the console", stage)
		}
	}
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst)
}
