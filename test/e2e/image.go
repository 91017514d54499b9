package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/pictl/pictl/internal/testcache"
	"github.com/pictl/pictl/test/vm"
)

// AddBootFiles puts the harness's kernel and busybox initramfs into root's
// /boot as vmlinuz-REL and initrd.img-REL: where `pictl image import`
// finds an x86 image's boot files (it copies them to the image's boot
// directory as vmlinuz and initrd.img).
func AddBootFiles(root string, a *vm.Artifacts) error {
	boot := filepath.Join(root, "boot")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		return err
	}
	for src, name := range map[string]string{a.Vmlinuz: "vmlinuz-", a.Initrd: "initrd.img-"} {
		if err := copyFile(src, filepath.Join(boot, name+a.KernelRelease), 0o644); err != nil {
			return fmt.Errorf("boot files: %w", err)
		}
	}
	return nil
}

// BusyboxImageSource writes an importable x86 image directory into dir: a
// test/vm busybox root filesystem (its /sbin/init runs spec's checks and
// prints NETBOOT-OK) with the harness's kernel and initramfs in /boot.
func BusyboxImageSource(dir string, a *vm.Artifacts, spec vm.RootfsSpec) error {
	if err := vm.BuildRootfs(dir, spec); err != nil {
		return err
	}
	return AddBootFiles(dir, a)
}

// DebianMarkerUnit is the systemd unit the Debian image runs once
// multi-user.target is reached: it prints the stage and the final marker
// the harness waits for on the serial console, lists failed units (for the
// log), and powers the guest off. HOLD in /proc/cmdline keeps it running.
const DebianMarkerUnit = `[Unit]
Description=pictl e2e: report multi-user.target on the console
After=multi-user.target
DefaultDependencies=no

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/usr/local/sbin/pictl-e2e-marker

[Install]
WantedBy=multi-user.target
`

// DebianMarkerScript is what DebianMarkerUnit runs.
const DebianMarkerScript = `#!/bin/sh
read up _ < /proc/uptime
echo "PXE-STAGE multi-user uptime=$up state=$(systemctl is-system-running)"
systemctl --no-legend --plain list-units --state=failed | sed 's/^/FAILED-UNIT /'
root=$(awk '$2 == "/" && $3 ~ /^nfs/ {print $1; exit}' /proc/mounts)
ok=0; bad=0
if [ -n "$root" ]; then ok=$((ok+1)); echo "CHECK ok root-is-nfs $root"; else bad=$((bad+1)); echo "CHECK FAIL root-is-nfs: $(grep ' / ' /proc/mounts)"; fi
if [ "$(readlink /proc/1/exe)" = /usr/lib/systemd/systemd ] || [ "$(readlink /proc/1/exe)" = /lib/systemd/systemd ]; then ok=$((ok+1)); echo "CHECK ok pid1-is-systemd"; else bad=$((bad+1)); echo "CHECK FAIL pid1-is-systemd: $(readlink /proc/1/exe)"; fi
if systemctl is-active -q multi-user.target; then ok=$((ok+1)); echo "CHECK ok multi-user-active"; else bad=$((bad+1)); echo "CHECK FAIL multi-user-active: $(systemctl is-active multi-user.target)"; fi
if echo hello > /var/tmp/e2e-write && [ "$(cat /var/tmp/e2e-write)" = hello ]; then ok=$((ok+1)); echo "CHECK ok write-own-layer"; else bad=$((bad+1)); echo "CHECK FAIL write-own-layer"; fi
read up _ < /proc/uptime
echo "NETBOOT-OK checks_ok=$ok checks_failed=$bad checks_xfail=0 uptime=$up"
sync
grep -qw HOLD /proc/cmdline || systemctl poweroff --force --force
`

// EnsureDebianTar returns the cached debootstrap archive the Debian image
// is made from (see testcache.DebianTar).
func EnsureDebianTar(ctx context.Context, logf func(string, ...any)) (string, error) {
	return testcache.DebianTar(ctx, func(f string, args ...any) { logf("e2e: "+f, args...) })
}

// DebianImageSource unpacks the cached Debian tree into dir and makes it
// bootable the way the tests boot it: the harness's kernel and initramfs in
// /boot, the marker unit enabled, a hostname and an empty root password
// for the serial console.
func DebianImageSource(ctx context.Context, dir, tarPath string, a *vm.Artifacts) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", dir, "-xpf", tarPath)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack %s: %w\n%s", tarPath, err, b)
	}
	if err := AddBootFiles(dir, a); err != nil {
		return err
	}
	files := []struct {
		name, content string
		mode          os.FileMode
	}{
		{"etc/systemd/system/pictl-e2e-marker.service", DebianMarkerUnit, 0o644},
		{"usr/local/sbin/pictl-e2e-marker", DebianMarkerScript, 0o755},
		{"etc/hostname", "debian-e2e\n", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	wants := filepath.Join(dir, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	link := filepath.Join(wants, "pictl-e2e-marker.service")
	_ = os.Remove(link)
	if err := os.Symlink("../pictl-e2e-marker.service", link); err != nil {
		return err
	}
	// No login prompt on the serial console: agetty hangs up the tty when
	// it starts (vhangup), and on a loaded machine it starts while the
	// marker writes — its lines after that were lost (a guest that passed
	// every check failed with only the first one seen).
	getty := filepath.Join(dir, "etc/systemd/system/serial-getty@ttyS0.service")
	_ = os.Remove(getty)
	return os.Symlink("/dev/null", getty)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
