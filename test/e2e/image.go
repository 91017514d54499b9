package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

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

// DebianCacheEnv overrides where the Debian tree is cached.
const DebianCacheEnv = "PICTL_E2E_CACHE"

// DebianPackages are added to debootstrap's minbase: systemd as PID 1 and
// udev, without which no device unit ever appears and systemd waits 90 s
// for dev-ttyS0.device before the serial getty (and multi-user.target).
// The initramfs configures the network, so nothing else is needed.
var DebianPackages = []string{"systemd-sysv", "udev"}

// DebianTarName is the cached debootstrap archive; the name carries the
// package list so a change rebuilds it.
func DebianTarName() string {
	return "debootstrap-bookworm-minbase+" + strings.Join(DebianPackages, "+") + ".tar"
}

// CacheDir is $PICTL_E2E_CACHE, else <repo>/.cache/e2e.
func CacheDir() string {
	if d := os.Getenv(DebianCacheEnv); d != "" {
		return d
	}
	if root, err := ModuleRoot(); err == nil {
		return filepath.Join(root, ".cache", "e2e")
	}
	return filepath.Join(os.TempDir(), "pictl-e2e-cache")
}

// EnsureDebianTar returns the cached archive (numeric owners, xattrs) of
// `debootstrap --variant=minbase --include=systemd-sysv,udev bookworm`,
// building it on first use from apt's mirror (a few minutes; flock-protected
// across processes).
func EnsureDebianTar(ctx context.Context, logf func(string, ...any)) (string, error) {
	dir := CacheDir()
	out := filepath.Join(dir, DebianTarName())
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("debootstrap needs root")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", errors.New("debootstrap not installed (Debian package debootstrap)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", err
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck // closing releases it
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	work, err := os.MkdirTemp(dir, "debootstrap-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	mirror := aptMirror()
	t0 := time.Now()
	logf("e2e: debootstrap --variant=minbase --include=%s bookworm from %s (first run only, a few minutes)", strings.Join(DebianPackages, ","), mirror)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(DebianPackages, ","), "bookworm", root, mirror)
	if b, err := cmd.CombinedOutput(); err != nil {
		tail := string(b)
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return "", fmt.Errorf("debootstrap from %s: %w\n%s", mirror, err, tail)
	}
	logf("e2e: debootstrap took %v", time.Since(t0).Round(time.Second))
	_ = os.RemoveAll(filepath.Join(root, "var/cache/apt/archives"))
	_ = os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, DebianTarName()+".tmp-"+hex.EncodeToString(rnd[:]))
	tarCmd := exec.CommandContext(ctx, "tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", root, "-cpf", tmp, ".")
	if b, err := tarCmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("tar: %w\n%s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return out, nil
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
	return os.Symlink("../pictl-e2e-marker.service", link)
}

// aptMirror is the first Debian archive apt is configured with.
func aptMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append(files, more...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			var uri string
			if u, ok := strings.CutPrefix(line, "URIs:"); ok {
				uri = strings.Fields(u + " ")[0]
			} else if strings.HasPrefix(line, "deb ") {
				for _, w := range strings.Fields(line)[1:] {
					if strings.Contains(w, "://") {
						uri = w
						break
					}
				}
			}
			if uri != "" && strings.HasSuffix(strings.TrimRight(uri, "/"), "/debian") {
				return uri
			}
		}
	}
	return "http://deb.debian.org/debian"
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
