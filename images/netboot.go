package images

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Boot kinds.
const (
	BootPi      = "pi"      // Raspberry Pi firmware route: start*.elf, config.txt, kernel*.img
	BootX86     = "x86"     // PXE/iPXE route: kernel + initrd
	BootGeneric = "generic" // another architecture without Pi firmware
)

// BootInfo says how nodes boot the image. File names are relative to the
// image's boot directory (Meta.BootDir), which tftpd serves.
type BootInfo struct {
	Kind string `json:"kind"`
	// Kernel is the kernel to load (Pi: the newest kernel*.img; x86:
	// "vmlinuz"), Kernels every kernel file found.
	Kernel  string   `json:"kernel,omitempty"`
	Kernels []string `json:"kernels,omitempty"`
	Initrd  string   `json:"initrd,omitempty"`
	// ConfigTxt is "config.txt" when the Pi firmware config exists.
	ConfigTxt string `json:"config_txt,omitempty"`
	// Cmdline is the image's own cmdline.txt (Pi), as imported.
	Cmdline string `json:"cmdline,omitempty"`
	// KernelArgs are what this image's kernel or initrd needs besides the
	// NFS root arguments tftpd renders for every node, e.g. boot=nfs for
	// an initramfs-tools initrd. The controller puts them before the
	// cluster's and the node's own arguments.
	KernelArgs string `json:"kernel_args,omitempty"`
	// NFSRoot says whether the kernel (Pi) or initrd (x86) can mount an
	// NFS root: "yes", "no" or "unknown"; NFSRootWhy gives the evidence.
	NFSRoot    string `json:"nfs_root"`
	NFSRootWhy string `json:"nfs_root_why,omitempty"`
}

// PrepStep records one netboot preparation step and what it changed.
type PrepStep struct {
	Name    string    `json:"name"`
	Changes []string  `json:"changes,omitempty"`
	At      time.Time `json:"at"`
}

// masked are SD-card-only or first-boot units: growing the root partition
// or swap file, regenerating SSH keys in the shared root, flashing EEPROMs.
var maskedUnits = []string{
	"dphys-swapfile.service",
	"resize2fs_once.service",
	"rpi-resize.service",
	"rpi-resize-swap-file.service",
	"regenerate_ssh_host_keys.service",
	"rpi-eeprom-update.service",
	"systemd-growfs-root.service",
	"swapfile.swap",
}

// prepare applies every netboot step to an image tree; each step is
// idempotent and returns what it changed (nothing on a second run).
func prepare(m *Meta) error {
	steps := []struct {
		name string
		fn   func(m *Meta) ([]string, error)
	}{
		{"fstab", prepFstab},
		{"mask-sd-units", prepMaskUnits},
		{"ssh-host-keys", prepSSHKeys},
		{"network-keep-nfs-interface", prepNetwork},
		{"boot", prepBoot},
	}
	for _, s := range steps {
		changes, err := s.fn(m)
		if err != nil {
			return fmt.Errorf("netboot preparation %s: %w", s.name, err)
		}
		recordStep(m, s.name, changes)
	}
	return nil
}

func recordStep(m *Meta, name string, changes []string) {
	for i := range m.Prepared {
		if m.Prepared[i].Name == name {
			if len(changes) > 0 {
				m.Prepared[i].Changes = append(m.Prepared[i].Changes, changes...)
				m.Prepared[i].At = time.Now().UTC()
			}
			return
		}
	}
	m.Prepared = append(m.Prepared, PrepStep{Name: name, Changes: changes, At: time.Now().UTC()})
}

const fstabMark = "#pictl-netboot# "

func isSDDevice(spec string) bool {
	for _, p := range []string{"PARTUUID=", "UUID=", "LABEL=", "PARTLABEL=", "/dev/mmcblk", "/dev/sd", "/dev/vd", "/dev/nvme", "/dev/disk/", "/dev/root"} {
		if strings.HasPrefix(spec, p) {
			return true
		}
	}
	return false
}

func prepFstab(m *Meta) ([]string, error) {
	p, err := resolveInRoot(m.RootDir, "/etc/fstab")
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var changes []string
	lines := strings.SplitAfter(string(b), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if isSDDevice(f[0]) || f[2] == "swap" {
			lines[i] = fstabMark + l
			changes = append(changes, fmt.Sprintf("commented out %s on %s", f[0], f[1]))
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	return changes, writeKeepingAttrs(p, []byte(strings.Join(lines, "")))
}

// writeKeepingAttrs replaces a file's content, keeping owner and mode.
func writeKeepingAttrs(p string, data []byte) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	tmp := p + ".pictl-tmp"
	if err := os.WriteFile(tmp, data, fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := statOf(fi); ok {
		if err := os.Chown(tmp, int(st.Uid), int(st.Gid)); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	return os.Rename(tmp, p)
}

func unitExists(root, unit string) bool {
	for _, d := range []string{"/usr/lib/systemd/system/", "/lib/systemd/system/", "/etc/systemd/system/"} {
		if p, err := resolveParentInRoot(root, d+unit); err == nil {
			if _, err := os.Lstat(p); err == nil {
				return true
			}
		}
	}
	if sysv, ok := strings.CutSuffix(unit, ".service"); ok {
		if p, err := resolveParentInRoot(root, "/etc/init.d/"+sysv); err == nil {
			if _, err := os.Lstat(p); err == nil {
				return true
			}
		}
	}
	return false
}

func prepMaskUnits(m *Meta) ([]string, error) {
	var changes []string
	for _, u := range maskedUnits {
		if !unitExists(m.RootDir, u) {
			continue
		}
		p, err := resolveParentInRoot(m.RootDir, "/etc/systemd/system/"+u)
		if err != nil {
			return nil, err
		}
		if t, err := os.Readlink(p); err == nil && t == "/dev/null" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		if err := os.Symlink("/dev/null", p); err != nil {
			return nil, err
		}
		changes = append(changes, "masked "+u)
	}
	return changes, nil
}

const sshKeysUnit = `[Unit]
Description=pictl: generate this node's SSH host keys (kept in the node's own layer)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
`

// prepSSHKeys removes host keys from the shared root (every node would
// otherwise share one identity) and installs a unit that makes missing
// keys at boot, which land in each node's own layer.
func prepSSHKeys(m *Meta) ([]string, error) {
	keygen, _ := resolveInRoot(m.RootDir, "/usr/bin/ssh-keygen")
	if _, err := os.Stat(keygen); err != nil {
		return nil, nil
	}
	var changes []string
	sshDir, err := resolveInRoot(m.RootDir, "/etc/ssh")
	if err != nil {
		return nil, err
	}
	keys, _ := filepath.Glob(filepath.Join(sshDir, "ssh_host_*_key*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return nil, err
		}
		changes = append(changes, "removed shared host key /etc/ssh/"+filepath.Base(k))
	}
	c, err := installUnit(m.RootDir, "pictl-ssh-host-keys.service", sshKeysUnit, "multi-user.target")
	return append(changes, c...), err
}

// installUnit writes a unit into /etc/systemd/system and enables it.
func installUnit(root, name, content, wantedBy string) ([]string, error) {
	var changes []string
	p, err := resolveParentInRoot(root, "/etc/systemd/system/"+name)
	if err != nil {
		return nil, err
	}
	if changed, err := writeIfDifferent(p, []byte(content), 0o644); err != nil {
		return nil, err
	} else if changed {
		changes = append(changes, "wrote /etc/systemd/system/"+name)
	}
	link, err := resolveInRoot(root, "/etc/systemd/system/"+wantedBy+".wants")
	if err != nil {
		return nil, err
	}
	link = filepath.Join(link, name)
	target := "/etc/systemd/system/" + name
	if t, err := os.Readlink(link); err != nil || t != target {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return nil, err
		}
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return nil, err
		}
		changes = append(changes, "enabled "+name+" in "+wantedBy)
	}
	return changes, nil
}

func writeIfDifferent(p string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return false, err
	}
	tmp := p + ".pictl-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return false, err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, p)
}

// The interface configured by the kernel or initramfs for the NFS root is
// the only one up this early; every network manager is told to leave it.
const nfsNetScript = `#!/bin/sh
# pictl: keep network managers off the interface that carries the NFS root.
grep -qs ' / nfs' /proc/mounts || exit 0
devs=
for d in /sys/class/net/*; do
	i=${d##*/}
	[ "$i" = lo ] && continue
	[ "$(cat "$d/operstate" 2>/dev/null)" = up ] || continue
	devs="$devs${devs:+;}interface-name:$i"
	mkdir -p /run/systemd/network
	printf '[Match]\nName=%s\n\n[Network]\nKeepConfiguration=yes\nDHCP=no\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' "$i" >"/run/systemd/network/05-pictl-nfsroot-$i.network"
done
[ -n "$devs" ] || exit 0
mkdir -p /run/NetworkManager/conf.d
printf '[keyfile]\nunmanaged-devices=%s\n' "$devs" >/run/NetworkManager/conf.d/90-pictl-nfsroot.conf
`

const nfsNetUnit = `[Unit]
Description=pictl: keep network managers off the NFS root interface
DefaultDependencies=no
After=systemd-remount-fs.service
Before=network-pre.target NetworkManager.service systemd-networkd.service dhcpcd.service networking.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /usr/local/lib/pictl/nfsroot-net.sh

[Install]
WantedBy=sysinit.target
`

func usesSystemd(root string) bool {
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if p, err := resolveInRoot(root, d); err == nil {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				return true
			}
		}
	}
	return false
}

func prepNetwork(m *Meta) ([]string, error) {
	var changes []string
	if usesSystemd(m.RootDir) {
		p, err := resolveParentInRoot(m.RootDir, "/usr/local/lib/pictl/nfsroot-net.sh")
		if err != nil {
			return nil, err
		}
		if changed, err := writeIfDifferent(p, []byte(nfsNetScript), 0o755); err != nil {
			return nil, err
		} else if changed {
			changes = append(changes, "wrote /usr/local/lib/pictl/nfsroot-net.sh")
		}
		c, err := installUnit(m.RootDir, "pictl-nfsroot-net.service", nfsNetUnit, "sysinit.target")
		if err != nil {
			return nil, err
		}
		changes = append(changes, c...)
	}
	// dhcpcd (Raspberry Pi OS before Bookworm) has no runtime config
	// directory; the Pi's wired interface is always eth0.
	if p, err := resolveInRoot(m.RootDir, "/etc/dhcpcd.conf"); err == nil {
		if b, err := os.ReadFile(p); err == nil && !bytes.Contains(b, []byte("# pictl: NFS root")) {
			b = append(b, "\n# pictl: NFS root on eth0, configured by the kernel\ndenyinterfaces eth0\n"...)
			if err := writeKeepingAttrs(p, b); err != nil {
				return nil, err
			}
			changes = append(changes, "dhcpcd.conf: denyinterfaces eth0")
		}
	}
	return changes, nil
}

// prepBoot fills Meta.Boot: the Pi firmware route or kernel + initrd.
func prepBoot(m *Meta) ([]string, error) {
	var changes []string
	if isPiBoot(m.BootDir) {
		return nil, piBoot(m)
	}
	if empty, _ := dirEmpty(m.BootDir); empty {
		// Directory and tar imports of a Pi root carry the firmware under
		// /boot/firmware (Bookworm) or /boot.
		for _, d := range []string{"/boot/firmware", "/boot"} {
			src, err := resolveInRoot(m.RootDir, d)
			if err == nil && isPiBoot(src) {
				if err := copyPlainTree(src, m.BootDir); err != nil {
					return nil, err
				}
				changes = append(changes, "copied Pi firmware from "+d)
				return changes, piBoot(m)
			}
		}
	}
	c, err := kernelBoot(m)
	return append(changes, c...), err
}

func isPiBoot(dir string) bool {
	for _, pat := range []string{"start*.elf", "bcm27*.dtb"} {
		if g, _ := filepath.Glob(filepath.Join(dir, pat)); len(g) > 0 {
			return true
		}
	}
	_, err := os.Stat(filepath.Join(dir, "config.txt"))
	return err == nil
}

func dirEmpty(d string) (bool, error) {
	f, err := os.Open(d)
	if err != nil {
		return true, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF), nil
}

func piBoot(m *Meta) error {
	b := &m.Boot
	b.Kind = BootPi
	b.Kernels = nil
	ks, _ := filepath.Glob(filepath.Join(m.BootDir, "kernel*.img"))
	for _, k := range ks {
		b.Kernels = append(b.Kernels, filepath.Base(k))
	}
	slices.Sort(b.Kernels)
	b.Kernel = ""
	// The firmware picks the kernel per model; record the 64-bit one for
	// arm64 images, else the first.
	for _, pref := range []string{"kernel8.img", "kernel_2712.img", "kernel7l.img", "kernel7.img", "kernel.img"} {
		if slices.Contains(b.Kernels, pref) {
			b.Kernel = pref
			break
		}
	}
	if _, err := os.Stat(filepath.Join(m.BootDir, "config.txt")); err == nil {
		b.ConfigTxt = "config.txt"
	}
	orig, err := os.ReadFile(filepath.Join(m.BootDir, "cmdline.txt"))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	// tftpd renders each node's cmdline.txt from this one at request
	// time, dropping what an NFS root replaces.
	b.Cmdline = strings.TrimSpace(string(orig))
	b.KernelArgs = ""
	b.NFSRoot = "yes"
	b.NFSRootWhy = "Raspberry Pi OS kernels have NFS root (CONFIG_ROOT_NFS) built in; no initramfs is needed"
	return nil
}

// kernelBoot finds /boot/vmlinuz-* and its initrd in the root tree and
// copies them into the boot directory as vmlinuz and initrd.img.
func kernelBoot(m *Meta) ([]string, error) {
	b := &m.Boot
	b.Kind = BootGeneric
	if m.Arch == "amd64" || m.Arch == "i386" {
		b.Kind = BootX86
	}
	bootInRoot, err := resolveInRoot(m.RootDir, "/boot")
	if err != nil {
		return nil, err
	}
	kernels, _ := filepath.Glob(filepath.Join(bootInRoot, "vmlinuz-*"))
	if len(kernels) == 0 {
		b.Kernel, b.Initrd, b.Kernels = "", "", nil
		b.NFSRoot = "no"
		b.NFSRootWhy = "the image has no kernel in /boot; install one (pictl image exec NAME -- apt-get install linux-image-" + m.Arch + ") or provide kernel and initrd in the boot directory"
		b.KernelArgs = ""
		return nil, nil
	}
	slices.SortFunc(kernels, func(a, b string) int { return compareVersions(filepath.Base(a), filepath.Base(b)) })
	kpath := kernels[len(kernels)-1]
	version := strings.TrimPrefix(filepath.Base(kpath), "vmlinuz-")
	b.Kernels = nil
	for _, k := range kernels {
		b.Kernels = append(b.Kernels, filepath.Base(k))
	}
	var changes []string
	if c, err := copyIfDifferent(kpath, filepath.Join(m.BootDir, "vmlinuz")); err != nil {
		return nil, err
	} else if c {
		changes = append(changes, "boot/vmlinuz from /boot/"+filepath.Base(kpath))
	}
	b.Kernel = "vmlinuz"
	b.Initrd = ""
	ipath := filepath.Join(bootInRoot, "initrd.img-"+version)
	if _, err := os.Stat(ipath); err == nil {
		if c, err := copyIfDifferent(ipath, filepath.Join(m.BootDir, "initrd.img")); err != nil {
			return nil, err
		} else if c {
			changes = append(changes, "boot/initrd.img from /boot/"+filepath.Base(ipath))
		}
		b.Initrd = "initrd.img"
	}
	b.NFSRoot, b.NFSRootWhy = nfsRootSupport(m.RootDir, version, ipath, b.Initrd != "")
	b.KernelArgs = ""
	if b.NFSRoot == "yes" && strings.Contains(b.NFSRootWhy, "initramfs-tools") {
		b.KernelArgs = "boot=nfs"
	}
	return changes, nil
}

func copyIfDifferent(src, dst string) (bool, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return false, err
	}
	return writeIfDifferent(dst, data, 0o644)
}

// copyPlainTree copies regular files and directories (a FAT-like tree).
func copyPlainTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type().IsRegular():
			_, err := copyIfDifferent(p, out)
			return err
		}
		return nil
	})
}

// compareVersions orders "vmlinuz-6.1.0-9-amd64" before "...-10-amd64".
func compareVersions(a, b string) int {
	split := func(s string) []string {
		var out []string
		cur := ""
		digit := false
		for _, r := range s {
			d := r >= '0' && r <= '9'
			if cur != "" && d != digit {
				out = append(out, cur)
				cur = ""
			}
			cur += string(r)
			digit = d
		}
		return append(out, cur)
	}
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		if len(pa[i]) > 0 && len(pb[i]) > 0 && pa[i][0] >= '0' && pa[i][0] <= '9' && pb[i][0] >= '0' && pb[i][0] <= '9' {
			if len(pa[i]) != len(pb[i]) {
				return len(pa[i]) - len(pb[i])
			}
		}
		return strings.Compare(pa[i], pb[i])
	}
	return len(pa) - len(pb)
}
