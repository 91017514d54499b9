// Command images-bench compares `pictl image import` of a 2 GiB-class
// Raspberry Pi OS-style .img.xz with the shell route a user would take:
// xz -dc to a file, loop-mount the partitions, cp -a, unmount, delete.
// Both run in the same process run, one after the other, each round
// alternating which goes first; the imported trees are then compared
// entry by entry (type, mode, owner, size, mtime, symlink target, device
// number, xattrs, hard links, content hash).
//
// Needs root, xz, mkfs.ext4, mkfs.vfat, mtools, losetup/mount. The fixture
// (ext4 filled with a copy of parts of /usr, plus device nodes, a FIFO,
// xattrs and hard links) is cached in <repo>/.cache/images.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/images/imagestest"
)

var (
	work   = flag.String("work", "", "scratch directory (default: a temp dir under the cache dir's filesystem)")
	rounds = flag.Int("rounds", 1, "rounds; each runs both routes")
	subset = flag.String("usr", "bin,sbin,share,libexec,lib/x86_64-linux-gnu,lib/python3.11", "comma-separated /usr subdirectories copied into the image")
	keep   = flag.Bool("keep", false, "keep the imported trees")
)

const sector = 512

func main() {
	flag.Parse()
	log.SetFlags(0)
	if os.Geteuid() != 0 {
		log.Fatal("images-bench needs root (loop mounts, owners, device nodes)")
	}
	cache := imagestest.CacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		log.Fatal(err)
	}
	fixture, err := ensureFixture(cache)
	if err != nil {
		log.Fatal(err)
	}
	fi, _ := os.Stat(fixture)
	dir := *work
	if dir == "" {
		dir, err = os.MkdirTemp(cache, "bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	log.Printf("fixture %s (%.0f MiB compressed)", fixture, float64(fi.Size())/(1<<20))

	var shellTimes, oursTimes []time.Duration
	var shellOut, oursOut string
	for r := 0; r < *rounds; r++ {
		order := []string{"shell", "pictl"}
		if r%2 == 1 {
			order = []string{"pictl", "shell"}
		}
		for _, who := range order {
			out := filepath.Join(dir, fmt.Sprintf("%s-%d", who, r))
			syncAndSettle()
			var d time.Duration
			if who == "shell" {
				d, err = shellRoute(fixture, out)
				shellTimes = append(shellTimes, d)
				shellOut = out
			} else {
				d, err = pictlRoute(fixture, out)
				oursTimes = append(oursTimes, d)
				oursOut = out
			}
			if err != nil {
				log.Fatalf("%s: %v", who, err)
			}
			log.Printf("round %d %-6s %6.1f s", r+1, who, d.Seconds())
		}
		if r < *rounds-1 {
			os.RemoveAll(shellOut)
			os.RemoveAll(oursOut)
		}
	}
	// Nothing lost: the shell route's tree against ours.
	n, diffs := compareTrees(filepath.Join(shellOut, "root"), filepath.Join(oursOut, "images", "bench", "root"))
	bn, bdiffs := compareContent(filepath.Join(shellOut, "boot"), filepath.Join(oursOut, "images", "bench", "boot"))
	m, err := (&images.Store{Dir: filepath.Join(oursOut, "images")}).Get("bench")
	if err != nil {
		log.Fatal(err)
	}
	if !*keep {
		os.RemoveAll(shellOut)
		os.RemoveAll(oursOut)
	}
	s, o := best(shellTimes), best(oursTimes)
	raw := float64(m.Size) / (1 << 20)
	fmt.Println()
	fmt.Printf("image import, %.0f MiB .img.xz → %d entries, %.0f MiB of file content (best of %d)\n", float64(fi.Size())/(1<<20), m.Files, raw, *rounds)
	fmt.Printf("| %-58s | %9s | %9s |\n", "route", "seconds", "MiB/s")
	fmt.Printf("|%s|%s|%s|\n", strings.Repeat("-", 60), strings.Repeat("-", 11), strings.Repeat("-", 11))
	fmt.Printf("| %-58s | %9.1f | %9.1f |\n", "competitor: xz -dc -T0 > img; mount -o loop; cp -a; mcopy", s.Seconds(), raw/s.Seconds())
	fmt.Printf("| %-58s | %9.1f | %9.1f |\n", "ours: images.Store.Import (xz tool, Go ext4/FAT, prepare)", o.Seconds(), raw/o.Seconds())
	fmt.Printf("ratio (competitor time / ours; ≥ 0.8 is the target): %.2f×\n", s.Seconds()/o.Seconds())
	for i := range shellTimes {
		fmt.Printf("  round %d: competitor %.1f s, ours %.1f s, ratio %.2f×\n", i+1, shellTimes[i].Seconds(), oursTimes[i].Seconds(), shellTimes[i].Seconds()/oursTimes[i].Seconds())
	}
	fmt.Printf("nothing lost: root %d entries compared, %d differences; boot %d files, %d differences\n", n, len(diffs), bn, len(bdiffs))
	for i, d := range append(diffs, bdiffs...) {
		if i == 20 {
			fmt.Println("  ...")
			break
		}
		fmt.Println("  " + d)
	}
	if len(diffs)+len(bdiffs) > 0 {
		os.Exit(1)
	}
}

func best(ds []time.Duration) time.Duration {
	b := ds[0]
	for _, d := range ds {
		b = min(b, d)
	}
	return b
}

// syncAndSettle writes back dirty pages so one route's writeback does not
// land in the other's time.
func syncAndSettle() {
	unix.Sync()
	time.Sleep(2 * time.Second)
}

func sh(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func shellRoute(fixture, out string) (time.Duration, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	img := filepath.Join(out, "tmp.img")
	mnt := filepath.Join(out, "mnt")
	os.MkdirAll(mnt, 0o755)
	start := time.Now()
	f, err := os.Create(img)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("xz", "-dc", "-T0", fixture)
	cmd.Stdout = f
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, err
	}
	f.Close()
	parts, err := readMBR(img)
	if err != nil {
		return 0, err
	}
	// Root: loop mount + cp -a. Boot: mtools, as this kernel (like many
	// containers) has no vfat module to mount it with.
	opts := fmt.Sprintf("ro,loop,offset=%d,sizelimit=%d", parts[1][0]*sector, parts[1][1]*sector)
	if err := sh("mount", "-o", opts, img, mnt); err != nil {
		return 0, err
	}
	os.MkdirAll(filepath.Join(out, "root"), 0o755)
	err = sh("cp", "-a", mnt+"/.", filepath.Join(out, "root"))
	if uerr := sh("umount", mnt); err == nil {
		err = uerr
	}
	if err != nil {
		return 0, err
	}
	os.MkdirAll(filepath.Join(out, "boot"), 0o755)
	if err := sh("mcopy", "-s", "-m", "-n", "-i", fmt.Sprintf("%s@@%d", img, parts[0][0]*sector), "::/*", filepath.Join(out, "boot")); err != nil {
		return 0, err
	}
	if err := os.Remove(img); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func pictlRoute(fixture, out string) (time.Duration, error) {
	s := &images.Store{Dir: filepath.Join(out, "images")}
	start := time.Now()
	_, err := s.Import(context.Background(), "bench", fixture, images.ImportOptions{Progress: images.ProgressPrinter(os.Stderr)})
	return time.Since(start), err
}

func readMBR(img string) ([4][2]int64, error) {
	var parts [4][2]int64
	f, err := os.Open(img)
	if err != nil {
		return parts, err
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil {
		return parts, err
	}
	for i := range 4 {
		e := b[446+16*i:]
		parts[i] = [2]int64{int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))}
	}
	return parts, nil
}

// ensureFixture builds the cached .img.xz: a FAT32 boot partition and an
// ext4 root partition holding a copy of parts of /usr plus one of every
// special file kind.
func ensureFixture(cache string) (string, error) {
	out := filepath.Join(cache, "bench-usr-2g.img.xz")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	log.Printf("building the benchmark fixture (once; a few minutes)")
	tmp, err := os.MkdirTemp(cache, "bench-fixture-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	for _, sub := range strings.Split(*subset, ",") {
		dst := filepath.Join(tree, "usr", sub)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := sh("cp", "-a", filepath.Join("/usr", sub), dst); err != nil {
			return "", err
		}
	}
	if err := addSpecialFiles(tree); err != nil {
		return "", err
	}
	boot := filepath.Join(tmp, "boot")
	os.MkdirAll(filepath.Join(boot, "overlays"), 0o755)
	for name, size := range map[string]int{"kernel8.img": 9 << 20, "start4.elf": 2 << 20, "bcm2711-rpi-4-b.dtb": 50 << 10, "overlays/vc4-kms-v3d.dtbo": 4 << 10} {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i * 7 % 251)
		}
		os.WriteFile(filepath.Join(boot, name), b, 0o644)
	}
	os.WriteFile(filepath.Join(boot, "config.txt"), []byte("arm_64bit=1\n"), 0o644)
	os.WriteFile(filepath.Join(boot, "cmdline.txt"), []byte("console=serial0,115200 root=PARTUUID=1-02 rootfstype=ext4 rootwait\n"), 0o644)
	fat := filepath.Join(tmp, "boot.fat")
	if err := sh("mkfs.vfat", "-F", "32", "-n", "bootfs", "-C", fat, fmt.Sprint(256*1024)); err != nil {
		return "", err
	}
	if err := sh("mcopy", "-s", "-i", fat, filepath.Join(boot, "config.txt"), filepath.Join(boot, "cmdline.txt"), filepath.Join(boot, "kernel8.img"), filepath.Join(boot, "start4.elf"), filepath.Join(boot, "bcm2711-rpi-4-b.dtb"), filepath.Join(boot, "overlays"), "::/"); err != nil {
		return "", err
	}
	ext := filepath.Join(tmp, "root.ext4")
	if err := sh("mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", tree, ext, "2600M"); err != nil {
		return "", err
	}
	os.RemoveAll(tree)
	img := filepath.Join(tmp, "bench.img")
	if err := assemble(img, fat, ext); err != nil {
		return "", err
	}
	os.Remove(fat)
	os.Remove(ext)
	if err := sh("xz", "-T2", "-2", img); err != nil {
		return "", err
	}
	if err := os.Rename(img+".xz", out); err != nil {
		return "", err
	}
	return out, nil
}

func addSpecialFiles(tree string) error {
	d := filepath.Join(tree, "special")
	os.MkdirAll(filepath.Join(d, "dev"), 0o755)
	steps := []error{
		unix.Mknod(filepath.Join(d, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))),
		unix.Mknod(filepath.Join(d, "dev/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))),
		unix.Mkfifo(filepath.Join(d, "fifo"), 0o600),
		os.WriteFile(filepath.Join(d, "ping"), []byte("#!/bin/sh\n"), 0o755),
		os.WriteFile(filepath.Join(d, "su"), []byte("#!/bin/sh\n"), 0o755),
	}
	steps = append(steps,
		os.Chmod(filepath.Join(d, "su"), 0o4755|os.ModeSetuid),
		unix.Setxattr(filepath.Join(d, "ping"), "security.capability", []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0),
		unix.Setxattr(filepath.Join(d, "ping"), "user.note", []byte("bench"), 0),
		os.Link(filepath.Join(d, "ping"), filepath.Join(d, "ping-hard")),
		os.Symlink("/usr/bin/env", filepath.Join(d, "abs-link")),
		os.Chown(filepath.Join(d, "fifo"), 1000, 1000),
	)
	for _, err := range steps {
		if err != nil {
			return err
		}
	}
	return nil
}

func assemble(img, fat, ext string) error {
	fatInfo, err := os.Stat(fat)
	if err != nil {
		return err
	}
	extInfo, err := os.Stat(ext)
	if err != nil {
		return err
	}
	fatStart := int64(8192)
	extStart := fatStart + fatInfo.Size()/sector
	mbr := make([]byte, 512)
	for i, p := range [][3]int64{{0x0c, fatStart, fatInfo.Size() / sector}, {0x83, extStart, extInfo.Size() / sector}} {
		e := mbr[446+16*i:]
		e[4] = byte(p[0])
		binary.LittleEndian.PutUint32(e[8:], uint32(p[1]))
		binary.LittleEndian.PutUint32(e[12:], uint32(p[2]))
	}
	mbr[510], mbr[511] = 0x55, 0xAA
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	for _, p := range []struct {
		path string
		at   int64
	}{{fat, fatStart * sector}, {ext, extStart * sector}} {
		src, err := os.Open(p.path)
		if err != nil {
			return err
		}
		if _, err := f.Seek(p.at, io.SeekStart); err != nil {
			return err
		}
		_, err = io.Copy(f, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

type entry struct {
	mode, uid, gid uint32
	size           int64
	mtime          int64
	rdev           uint64
	target, xattrs string
	sum            string
	links          string
}

func describe(root string) (map[string]entry, error) {
	out := map[string]entry{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := entry{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano()}
		if rel == "." {
			e.mtime = 0
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.size = st.Size
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			e.sum = hex.EncodeToString(h.Sum(nil)[:8])
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case unix.S_IFLNK:
			e.target, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			e.rdev = st.Rdev
		}
		e.xattrs = xattrs(p)
		out[rel] = e
		return nil
	})
	for _, names := range inodes {
		sort.Strings(names)
		for _, n := range names {
			e := out[n]
			e.links = strings.Join(names, "|")
			out[n] = e
		}
	}
	return out, err
}

func xattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var kv []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 64<<10)
		m, _ := unix.Lgetxattr(p, name, v)
		kv = append(kv, name+"="+hex.EncodeToString(v[:max(m, 0)]))
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func compareTrees(a, b string) (int, []string) {
	ea, err := describe(a)
	if err != nil {
		return 0, []string{err.Error()}
	}
	eb, err := describe(b)
	if err != nil {
		return 0, []string{err.Error()}
	}
	var diffs []string
	for k, va := range ea {
		vb, ok := eb[k]
		if !ok {
			diffs = append(diffs, "missing in ours: "+k)
			continue
		}
		if va != vb {
			diffs = append(diffs, fmt.Sprintf("%s: shell %+v ours %+v", k, va, vb))
		}
	}
	for k := range eb {
		if _, ok := ea[k]; !ok && !addedByPreparation(k) {
			diffs = append(diffs, "extra in ours: "+k)
		}
	}
	sort.Strings(diffs)
	return len(ea), diffs
}

// compareContent compares a FAT tree by content only (FAT has no owners).
func compareContent(a, b string) (int, []string) {
	var diffs []string
	n := 0
	filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(a, p)
		x, _ := os.ReadFile(p)
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil || string(x) != string(y) {
			diffs = append(diffs, "boot/"+rel+" differs")
		}
		return nil
	})
	return n, diffs
}

// addedByPreparation tells files the netboot preparation writes (units,
// their wants links and directories, the NFS-root network script) from
// anything the import itself would have invented.
func addedByPreparation(rel string) bool {
	for _, p := range []string{"etc", "etc/systemd", "etc/systemd/system", "usr/local/lib/pictl"} {
		if rel == p {
			return true
		}
	}
	return strings.HasPrefix(rel, "etc/systemd/system/") && strings.Contains(rel, "pictl-") ||
		strings.HasPrefix(rel, "etc/systemd/system/") && strings.HasSuffix(rel, ".wants") ||
		strings.HasPrefix(rel, "usr/local/lib/pictl/")
}
