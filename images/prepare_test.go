package images

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPiImageMetadataAndNetbootPreparation(t *testing.T) {
	needTools(t, "mkfs.vfat", "mcopy", "mkfs.ext4")
	src, boot := t.TempDir(), t.TempDir()
	makeRootTree(t, src)
	makeBootTree(t, boot)
	img := filepath.Join(t.TempDir(), "rpi.img")
	makeDiskImage(t, img, src, boot, diskOpts{})
	s := newStore(t)
	m, err := s.Import(context.Background(), "rpi-os", img, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if m.Arch != hostArch() || m.OSRelease.ID != "debian" || m.OSRelease.VersionID != "12" {
		t.Errorf("arch %q, os-release %+v", m.Arch, m.OSRelease)
	}
	if !reflect.DeepEqual(m.Kernels, []string{"6.6.51+rpt-rpi-v8"}) {
		t.Errorf("kernels %v", m.Kernels)
	}
	if !reflect.DeepEqual(m.Packages, map[string]string{"nginx": "1.22.1-9", "libc6": "2.36-9+deb12u10"}) {
		t.Errorf("packages %v", m.Packages)
	}
	if m.SourceKind != KindDisk || m.Files < 300 || m.Size < 640000+3145731 {
		t.Errorf("kind %s files %d size %d", m.SourceKind, m.Files, m.Size)
	}

	fstab, _ := os.ReadFile(filepath.Join(m.RootDir, "etc/fstab"))
	for _, line := range strings.Split(string(fstab), "\n") {
		if (strings.Contains(line, "PARTUUID") || strings.Contains(line, "swap")) && !strings.HasPrefix(line, fstabMark) {
			t.Errorf("fstab line kept: %q", line)
		}
	}
	if !strings.Contains(string(fstab), "proc /proc proc defaults 0 0\n") {
		t.Errorf("fstab lost proc:\n%s", fstab)
	}
	if l, _ := os.Readlink(filepath.Join(m.RootDir, "etc/systemd/system/dphys-swapfile.service")); l != "/dev/null" {
		t.Errorf("dphys-swapfile not masked: %q", l)
	}
	if _, err := os.Lstat(filepath.Join(m.RootDir, "etc/systemd/system/resize2fs_once.service")); err == nil {
		t.Error("masked a unit the image does not have")
	}
	if l, _ := os.Readlink(filepath.Join(m.RootDir, "etc/systemd/system/sysinit.target.wants/pictl-nfsroot-net.service")); l != "/etc/systemd/system/pictl-nfsroot-net.service" {
		t.Errorf("network keeper not enabled: %q", l)
	}
	if _, err := os.Stat(filepath.Join(m.RootDir, "etc/ssh/ssh_host_ed25519_key")); !os.IsNotExist(err) {
		t.Errorf("shared SSH host key kept: %v", err)
	}

	b := m.Boot
	if b.Kind != BootPi || b.Kernel != "kernel8.img" || b.ConfigTxt != "config.txt" || b.NFSRoot != "yes" {
		t.Errorf("boot %+v", b)
	}
	if b.Cmdline != "console=serial0,115200 console=tty1 root=PARTUUID=abcd-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot" || b.KernelArgs != "" {
		t.Errorf("cmdline %q, kernel args %q", b.Cmdline, b.KernelArgs)
	}

	// Preparation is idempotent: a second run changes nothing.
	before := describeTree(t, m.RootDir, nil)
	bootBefore := describeTree(t, m.BootDir, nil)
	m2, err := s.Prepare("rpi-os")
	if err != nil {
		t.Fatal(err)
	}
	compareTrees(t, before, describeTree(t, m.RootDir, nil), true)
	compareTrees(t, bootBefore, describeTree(t, m.BootDir, nil), true)
	for i := range m.Prepared {
		if !reflect.DeepEqual(m.Prepared[i].Changes, m2.Prepared[i].Changes) {
			t.Errorf("step %s changed on the second run: %v → %v", m.Prepared[i].Name, m.Prepared[i].Changes, m2.Prepared[i].Changes)
		}
	}
	if len(m2.Prepared) != 5 {
		t.Errorf("prepared steps %+v", m2.Prepared)
	}

	l, err := s.List()
	if err != nil || len(l) != 1 || l[0].Name != "rpi-os" || l[0].RootDir != s.RootDir("rpi-os") {
		t.Errorf("List: %v %v", l, err)
	}
}

func TestInRootResolution(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("ID=x\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release"))
	os.Symlink("/", filepath.Join(root, "etc/up"))
	os.Symlink("../../../../../../etc", filepath.Join(root, "escape"))
	os.Symlink("loop", filepath.Join(root, "loop"))
	for in, want := range map[string]string{
		"/etc/os-release":           root + "/usr/lib/os-release",
		"/etc/up/etc/up/usr/lib":    root + "/usr/lib",
		"/escape/os-release":        root + "/usr/lib/os-release", // ".." stops at the image root
		"/../../usr/lib/os-release": root + "/usr/lib/os-release",
		"/missing/x":                root + "/missing/x",
	} {
		got, err := resolveInRoot(root, in)
		if err != nil || got != want {
			t.Errorf("resolve %s = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := resolveInRoot(root, "/loop/x"); err == nil {
		t.Error("symlink loop resolved")
	}
}
