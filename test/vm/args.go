package vm

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// KernelArgs builds the kernel command line the initramfs understands
// (see scripts/build-initramfs.sh for every parameter).
type KernelArgs struct {
	// NFSRoot is "SERVER:/export". Empty: DHCP option 17, else the DHCP
	// server (or Server for a static address) with export "/".
	NFSRoot string
	// NFSPort is the NFS and MOUNT port; 0 leaves the default, 2049.
	NFSPort int
	// NFSOpts are appended to the mount options (e.g. "soft,timeo=50").
	NFSOpts string
	// Static, if valid, configures the guest address without DHCP
	// (rendered as ip=CLIENT:SERVER:GW:NETMASK:HOSTNAME::off).
	Static   netip.Prefix
	Gateway  netip.Addr // optional default route for Static
	Server   netip.Addr // NFS server when NFSRoot is empty (static only)
	Hostname string
	// Verbose drops "quiet": the kernel prints its boot log (slower on a
	// serial console under TCG).
	Verbose bool
	// Extra parameters, appended as given (e.g. "pxedebug", or markers a
	// test's init looks for in /proc/cmdline).
	Extra []string
}

// String renders the command line: console on ttyS0, panic=-1 so that a
// dying init ends QEMU at once (-no-reboot), no_timer_check because the
// kernel's IO-APIC timer check can fail (and panic) when a loaded host
// starves the TCG vCPU, then the parameters.
func (k KernelArgs) String() string {
	p := []string{"console=ttyS0", "panic=-1", "no_timer_check"}
	if !k.Verbose {
		p = append(p, "quiet")
	}
	if k.NFSRoot != "" {
		p = append(p, "nfsroot="+k.NFSRoot)
	}
	if k.NFSPort != 0 {
		p = append(p, fmt.Sprintf("nfsport=%d", k.NFSPort))
	}
	if k.NFSOpts != "" {
		p = append(p, "nfsopts="+k.NFSOpts)
	}
	if k.Static.IsValid() {
		var srv, gw string
		if k.Server.IsValid() {
			srv = k.Server.String()
		}
		if k.Gateway.IsValid() {
			gw = k.Gateway.String()
		}
		mask := net.IP(net.CIDRMask(k.Static.Bits(), k.Static.Addr().BitLen())).String()
		p = append(p, fmt.Sprintf("ip=%s:%s:%s:%s:%s::off", k.Static.Addr(), srv, gw, mask, k.Hostname))
	}
	return strings.Join(append(p, k.Extra...), " ")
}

// IPXEScript returns a boot.ipxe that fetches kernel and initrd by TFTP
// from the DHCP next-server (names relative to the TFTP root) and boots
// them with args, printing PXE-STAGE markers the harness times.
func IPXEScript(kernel, initrd string, args KernelArgs) string {
	return fmt.Sprintf(`#!ipxe
echo PXE-STAGE ipxe-script-start
kernel %s %s
initrd %s
echo PXE-STAGE ipxe-downloaded
boot
`, kernel, args, initrd)
}
