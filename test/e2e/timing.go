package e2e

import (
	"fmt"
	"strings"
	"time"

	"github.com/pictl/pictl/test/vm"
)

// Phase is one step of a PXE boot, timed off the guest console (seconds
// since QEMU started, as the lines arrived).
type Phase struct {
	Name       string
	Start, End time.Duration
	OK         bool // both ends were seen
}

// Took is the phase's duration.
func (p Phase) Took() time.Duration { return p.End - p.Start }

// PXEPhases splits a PXE boot's console into the phases the recipe times:
//
//	firmware   QEMU start → iPXE's link is up (SeaBIOS, iPXE init, its fixed 2 s banner wait)
//	dhcp       link up → iPXE's "Configuring ... ok" (DHCP, and the IPv6 router wait)
//	tftp       → iPXE's "initrd.img ... ok" (boot.ipxe, kernel, initrd)
//	kernel     → the initramfs starts (bzImage decompression under TCG, kernel boot)
//	initramfs  → its DHCP is bound (modules, udhcpc)
//	nfs-mount  nfs-mount-start → nfs-mounted
//	userspace  → the final marker (switch_root, init or systemd, the checks)
//
// The last line of iPXE can be cut by the kernel's UART reset (it then runs
// into the initramfs's first line), so the tftp phase ends at tftpDone when
// it is known (the controller logged the initrd's transfer; see
// TransferDone), else at the last iPXE download line seen.
func PXEPhases(r *vm.Result, final string, tftpDone time.Duration) []Phase {
	at := func(substr string) (time.Duration, bool) {
		l, ok := r.FirstLine(substr)
		return l.At, ok
	}
	stage := func(name string) (time.Duration, bool) {
		s, ok := r.Stage(name)
		return s.At, ok
	}
	var tftpEnd time.Duration
	tftpOK := false
	for _, l := range r.Lines {
		if strings.Contains(l.Text, "PXE-STAGE initrd-start") {
			break
		}
		if strings.Contains(l.Text, "initrd.img...") || strings.Contains(l.Text, "vmlinuz...") {
			tftpEnd, tftpOK = l.At, true
		}
	}
	if tftpDone > 0 {
		tftpEnd, tftpOK = tftpDone, true
	}
	linkUp, ok1 := at("Link:up")
	conf, ok2 := at("Configuring (net0")
	initrd, ok3 := stage("initrd-start")
	bound, ok4 := stage("dhcp-bound")
	mStart, ok5 := stage("nfs-mount-start")
	mEnd, ok6 := stage("nfs-mounted")
	fin, ok7 := stage(final)
	if final == "NETBOOT-OK" {
		fin, ok7 = at("NETBOOT-OK")
	}
	return []Phase{
		{"firmware", 0, linkUp, ok1},
		{"dhcp", linkUp, conf, ok1 && ok2},
		{"tftp", conf, tftpEnd, ok2 && tftpOK},
		{"kernel", tftpEnd, initrd, tftpOK && ok3},
		{"initramfs", initrd, bound, ok3 && ok4},
		{"nfs-mount", mStart, mEnd, ok5 && ok6},
		{"userspace", mEnd, fin, ok6 && ok7},
	}
}

// PhaseTable renders phases as an aligned table with a total.
func PhaseTable(title string, phases []Phase, total time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n  %-10s %8s %8s\n", title, "phase", "took(s)", "end(s)")
	for _, p := range phases {
		if !p.OK {
			fmt.Fprintf(&b, "  %-10s %8s %8s\n", p.Name, "-", "-")
			continue
		}
		fmt.Fprintf(&b, "  %-10s %8.2f %8.2f\n", p.Name, p.Took().Seconds(), p.End.Seconds())
	}
	fmt.Fprintf(&b, "  %-10s %8s %8.2f\n", "qemu-exit", "", total.Seconds())
	return b.String()
}

// TransferDone finds when the controller logged the end of a TFTP transfer
// of file to mac ("tftp transfer" debug lines of `pictl serve`), as a
// duration since qemuStart; 0 when there is no such line.
func TransferDone(controllerLog, file, mac string, qemuStart time.Time) time.Duration {
	var last time.Duration
	for _, line := range strings.Split(controllerLog, "\n") {
		if !strings.Contains(line, `msg="tftp transfer"`) || !strings.Contains(line, " file="+file+" ") ||
			!strings.Contains(line, " mac="+mac) || !strings.Contains(line, "outcome=ok") {
			continue
		}
		ts, ok := strings.CutPrefix(strings.Fields(line)[0], "time=")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || at.Before(qemuStart) {
			continue
		}
		last = at.Sub(qemuStart)
	}
	return last
}
