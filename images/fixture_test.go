package images

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var fixtureMtime = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

// needTools skips the test when a host tool it drives is missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (owners, device nodes, chroot)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian: dosfstools, mtools, e2fsprogs, xz-utils)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// makeRootTree writes a root filesystem with every kind of entry the
// importer must preserve.
func makeRootTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mk := func(rel string, mode os.FileMode, content string) {
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(content), 0o644))
		must(os.Chmod(p, mode))
	}
	must(os.MkdirAll(filepath.Join(dir, "etc/ssh"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "boot/firmware"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "var/lib/dpkg"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "usr/lib/modules/6.6.51+rpt-rpi-v8"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "lib/systemd/system"), 0o755))
	mk("etc/fstab", 0o644, "proc /proc proc defaults 0 0\nPARTUUID=abcd-01 /boot/firmware vfat defaults 0 2\nPARTUUID=abcd-02 / ext4 defaults,noatime 0 1\n# a comment\n/var/swap none swap sw 0 0\n")
	mk("usr/lib/os-release", 0o644, "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n")
	must(os.Symlink("../usr/lib/os-release", filepath.Join(dir, "etc/os-release")))
	mk("var/lib/dpkg/status", 0o644, "Package: nginx\nStatus: install ok installed\nVersion: 1.22.1-9\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u10\n")
	mk("lib/systemd/system/dphys-swapfile.service", 0o644, "[Service]\n")
	mk("etc/ssh/ssh_host_ed25519_key", 0o600, "secret")
	mk("usr/bin/ssh-keygen", 0o755, "#!/bin/sh\n")
	// /bin/sh: the test binary's own ELF header gives the host arch.
	self, err := os.ReadFile("/bin/dash")
	must(err)
	must(os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/dash"), self, 0o755))
	must(os.Symlink("usr/bin", filepath.Join(dir, "bin")))
	must(os.Symlink("dash", filepath.Join(dir, "usr/bin/sh")))

	mk("data/empty", 0o644, "")
	mk("data/small", 0o640, "tiny")
	big := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640000 bytes
	must(os.WriteFile(filepath.Join(dir, "data/big"), big, 0o644))
	// A sparse file: data, a hole, data.
	f, err := os.Create(filepath.Join(dir, "data/sparse"))
	must(err)
	_, err = f.WriteAt([]byte("start"), 0)
	must(err)
	_, err = f.WriteAt([]byte("end"), 3<<20)
	must(err)
	must(f.Close())
	mk("usr/bin/su", 0o4755, "#!/bin/sh\n")
	mk("usr/bin/wall", 0o2755, "#!/bin/sh\n")
	must(os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o1777))
	must(os.MkdirAll(filepath.Join(dir, "srv/shared"), 0o755))
	must(os.Chmod(filepath.Join(dir, "srv/shared"), 0o2775))
	mk("home/pi/.profile", 0o644, "export A=1\n")
	must(os.Chown(filepath.Join(dir, "home/pi/.profile"), 1000, 1000))
	must(os.Chown(filepath.Join(dir, "home/pi"), 1000, 1000))
	mk("var/log/wtmp", 0o664, "")
	must(os.Chown(filepath.Join(dir, "var/log/wtmp"), 0, 43))
	// Symlinks: relative, absolute, dangling, long (not a fast symlink).
	must(os.Symlink("/etc/fstab", filepath.Join(dir, "data/abs-link")))
	must(os.Symlink("../no/such/file", filepath.Join(dir, "data/dangling")))
	long := strings.Repeat("long-target-component/", 8) + "end"
	must(os.Symlink(long, filepath.Join(dir, "data/long-link")))
	// Hard links, in one directory and across directories.
	must(os.Link(filepath.Join(dir, "data/small"), filepath.Join(dir, "data/small-hard")))
	must(os.Link(filepath.Join(dir, "data/small"), filepath.Join(dir, "home/small-hard")))
	// Device nodes and a FIFO.
	must(os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
	must(unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(dir, "dev/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))))
	must(unix.Mknod(filepath.Join(dir, "dev/big-minor"), unix.S_IFCHR|0o600, int(unix.Mkdev(240, 70000))))
	must(unix.Mkfifo(filepath.Join(dir, "data/fifo"), 0o620))
	// Extended attributes: user, security (file capability), trusted, ACL.
	must(unix.Setxattr(filepath.Join(dir, "data/big"), "user.comment", []byte("imported"), 0))
	must(unix.Setxattr(filepath.Join(dir, "data/big"), "trusted.pictl", []byte{0, 1, 2, 3}, 0))
	capNetRaw := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	must(os.WriteFile(filepath.Join(dir, "usr/bin/ping"), []byte("#!/bin/sh\n"), 0o755))
	must(unix.Setxattr(filepath.Join(dir, "usr/bin/ping"), "security.capability", capNetRaw, 0))
	must(unix.Setxattr(filepath.Join(dir, "srv/shared"), "system.posix_acl_default", vfsACL(t), 0))
	must(unix.Setxattr(filepath.Join(dir, "data/small"), "system.posix_acl_access", vfsACL(t), 0))
	// Many entries so directories span blocks (htree on ext4).
	for i := range 300 {
		mk(fmt.Sprintf("usr/share/many/file-with-a-longish-name-%03d", i), 0o644, fmt.Sprint(i))
	}
	// Times: fixed mtime with nanoseconds everywhere, atime after it and
	// recent, so reads under relatime leave it alone.
	atime := time.Now().Add(-time.Hour).Truncate(time.Second).Add(987654321)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(fixtureMtime.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	must(err)
}

// vfsACL is user::rwx user:1000:r-x group::r-x mask::r-x other::---.
func vfsACL(t *testing.T) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{1, 7, 0xFFFFFFFF}, {2, 5, 1000}, {4, 5, 0xFFFFFFFF}, {0x10, 5, 0xFFFFFFFF}, {0x20, 0, 0xFFFFFFFF}} {
		b = le.AppendUint16(b, e.tag)
		b = le.AppendUint16(b, e.perm)
		b = le.AppendUint32(b, e.id)
	}
	return b
}

func makeBootTree(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"config.txt":                "arm_64bit=1\nenable_uart=1\n",
		"cmdline.txt":               "console=serial0,115200 console=tty1 root=PARTUUID=abcd-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
		"start4.elf":                "firmware",
		"kernel8.img":               strings.Repeat("K", 100000),
		"bcm2711-rpi-4-b.dtb":       "dtb",
		"overlays/vc4-kms-v3d.dtbo": "overlay",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// diskOpts choose how the fixture image's root filesystem is made.
type diskOpts struct {
	mkfs     string   // mkfs.ext4 or mkfs.ext2
	features []string // extra -O features
	blockKB  int
	debugfs  []string // debugfs -w requests applied to the root filesystem
}

// makeDiskImage builds an MBR disk image with a FAT32 boot partition and
// an ext4 root partition made by mkfs.ext4 -d from rootDir.
func makeDiskImage(t *testing.T, out, rootDir, bootDir string, o diskOpts) {
	t.Helper()
	tmp := t.TempDir()
	fat := filepath.Join(tmp, "boot.fat")
	run(t, "mkfs.vfat", "-F", "32", "-S", "512", "-s", "1", "-n", "BOOTFS", "-C", fat, fmt.Sprint(36*1024))
	ents, _ := os.ReadDir(bootDir)
	args := []string{"-s", "-i", fat}
	for _, e := range ents {
		args = append(args, filepath.Join(bootDir, e.Name()))
	}
	run(t, "mcopy", append(args, "::/")...)
	ext := filepath.Join(tmp, "root.ext4")
	if o.mkfs == "" {
		o.mkfs = "mkfs.ext4"
	}
	if o.blockKB == 0 {
		o.blockKB = 4
	}
	mkfs := []string{"-q", "-F", "-L", "rootfs", "-b", fmt.Sprint(o.blockKB * 1024), "-d", rootDir}
	for _, f := range o.features {
		mkfs = append(mkfs, "-O", f)
	}
	run(t, o.mkfs, append(mkfs, ext, "48M")...)
	for _, req := range o.debugfs {
		run(t, "debugfs", "-w", "-R", req, ext)
	}

	const sector = 512
	fatStart, extStart := int64(8192), int64(8192+36*1024*2)
	fatInfo, _ := os.Stat(fat)
	extInfo, _ := os.Stat(ext)
	mbr := make([]byte, 512)
	entry := func(i int, typ byte, start, size int64) {
		e := mbr[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], uint32(start))
		binary.LittleEndian.PutUint32(e[12:], uint32(size))
	}
	entry(0, 0x0c, fatStart, fatInfo.Size()/sector)
	entry(1, 0x83, extStart, extInfo.Size()/sector)
	binary.LittleEndian.PutUint32(mbr[440:], 0xabcd)
	mbr[510], mbr[511] = 0x55, 0xAA
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	for _, part := range []struct {
		path string
		at   int64
	}{{fat, fatStart * sector}, {ext, extStart * sector}} {
		src, err := os.Open(part.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(part.at, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
	}
}

// entryInfo is everything compared between a source and an imported tree.
type entryInfo struct {
	Mode      uint32
	UID, GID  uint32
	Size      int64
	Rdev      uint64
	Mtime     int64
	Atime     int64
	Target    string
	Sum       string
	Xattrs    string
	LinkGroup string // other names of the same inode
}

func describeTree(t *testing.T, root string, skip func(rel string) bool) map[string]entryInfo {
	t.Helper()
	out := map[string]entryInfo{}
	byIno := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := entryInfo{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano(), Atime: st.Atim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Size = st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			e.Sum = hex.EncodeToString(h[:8])
			if st.Nlink > 1 {
				byIno[st.Ino] = append(byIno[st.Ino], rel)
			}
		case unix.S_IFLNK:
			e.Target, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			e.Rdev = st.Rdev
		}
		x, err := listXattrs(p)
		if err != nil {
			return err
		}
		var keys []string
		for k, v := range x {
			keys = append(keys, k+"="+hex.EncodeToString(v))
		}
		sort.Strings(keys)
		e.Xattrs = strings.Join(keys, ",")
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range byIno {
		sort.Strings(names)
		for _, n := range names {
			e := out[n]
			e.LinkGroup = strings.Join(names, "|")
			out[n] = e
		}
	}
	return out
}

// asMkfsStores adjusts a source description to what mkfs.ext4 -d records:
// whole-second times, and atimes of its own reading.
func asMkfsStores(in map[string]entryInfo) map[string]entryInfo {
	out := map[string]entryInfo{}
	for k, v := range in {
		v.Mtime -= v.Mtime % 1e9
		out[k] = v
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]entryInfo, ignoreAtime bool) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	bad := 0
	for _, n := range names {
		w := want[n]
		g, ok := got[n]
		if !ok {
			t.Errorf("%s: missing from the import", n)
			bad++
			continue
		}
		if ignoreAtime {
			w.Atime, g.Atime = 0, 0
		}
		if n == "." {
			// The root directory's times change with the preparation's writes.
			w.Mtime, g.Mtime, w.Atime, g.Atime = 0, 0, 0, 0
		}
		if w != g {
			t.Errorf("%s:\n source %+v\n import %+v", n, w, g)
			bad++
		}
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("%s: in the import but not in the source", n)
		}
	}
}
