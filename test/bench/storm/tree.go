package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pictl/pictl/internal/testcache"
)

// The image both servers serve: the cached debootstrap tree (a real Debian
// root) with Raspberry Pi OS firmware files of the real sizes in
// /boot/firmware. The firmware's content is deterministic noise: the
// servers only move bytes, and a Pi's bootloader is not running here.
//
// Sizes are those of Raspberry Pi OS Bookworm (2024-11) firmware files.
var firmwareFiles = []struct {
	name string
	size int
}{
	{"bootcode.bin", 52476},
	{"start.elf", 2975744},
	{"fixup.dat", 7314},
	{"start4.elf", 2252800},
	{"fixup4.dat", 5456},
	{"kernel8.img", 9281536},
	{"kernel_2712.img", 9551872},
	{"bcm2710-rpi-3-b.dtb", 32753},
	{"bcm2710-rpi-3-b-plus.dtb", 33385},
	{"bcm2711-rpi-4-b.dtb", 56293},
	{"bcm2712-rpi-5-b.dtb", 79019},
	{"overlays/overlay_map.dtb", 5487},
	{"overlays/vc4-kms-v3d.dtbo", 2960},
	{"overlays/vc4-kms-v3d-pi4.dtbo", 4303},
	{"overlays/vc4-kms-v3d-pi5.dtbo", 4457},
}

// configTxt is Bookworm's default config.txt (the parts a netboot uses).
const configTxt = `# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[all]
`

// imageCmdline is the image's own cmdline.txt; pictl renders each node's
// from it, for dnsmasq the bench writes each node's by hand as an admin
// would (see dnsmasqTree).
const imageCmdline = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n"

const treeManifest = "pictl storm tree v1\n"

// ensureSource extracts the cached Debian tree into dir (once: a manifest
// names the archive it came from) and adds the Pi firmware.
func ensureSource(ctx context.Context, log *slog.Logger, dir string) error {
	tarball, err := testcache.DebianTar(ctx, func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) })
	if err != nil {
		return fmt.Errorf("debian tree: %w", err)
	}
	manifest := treeManifest + filepath.Base(tarball) + "\n"
	mpath := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".manifest")
	if b, err := os.ReadFile(mpath); err == nil && string(b) == manifest {
		return nil
	}
	log.Info("extracting the Debian tree", "tar", tarball, "into", dir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "tar", "--numeric-owner", "-xpf", tarball, "-C", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("tar -x %s: %w\n%s", tarball, err, out)
	}
	fw := filepath.Join(dir, "boot", "firmware")
	if err := os.MkdirAll(filepath.Join(fw, "overlays"), 0o755); err != nil {
		return err
	}
	for _, f := range firmwareFiles {
		if err := os.WriteFile(filepath.Join(fw, f.name), noise(f.name, f.size), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(fw, "config.txt"), []byte(configTxt), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(fw, "cmdline.txt"), []byte(imageCmdline), 0o644); err != nil {
		return err
	}
	return os.WriteFile(mpath, []byte(manifest), 0o644)
}

// noise is size deterministic pseudo-random bytes seeded by name.
func noise(name string, size int) []byte {
	var seed [32]byte
	copy(seed[:], name)
	r := rand.New(rand.NewChaCha8(seed))
	b := make([]byte, (size+7)&^7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:size]
}

// wsFile is one file of the boot working set: its path below the root
// and size.
type wsFile struct {
	path string
	size uint64
}

// workingSet picks the files a booting Pi reads over NFS: regular files
// below usr/lib, usr/bin, usr/sbin, usr/libexec and etc/ of the root
// (shared libraries, binaries, configuration), sorted by size, largest
// first (ties by path). It takes maxFiles consecutive files of that list,
// starting at the first place where their total fits in maxBytes: the
// largest files that make a working set of that many files and bytes
// (in the debootstrap tree that skips the dozen biggest — hwdb.bin, perl,
// libcrypto — and starts at libc). Deterministic, so every run and both
// servers read the same set.
func workingSet(root string, maxFiles int, maxBytes uint64) ([]wsFile, error) {
	var all []wsFile
	for _, top := range []string{"usr/lib", "usr/bin", "usr/sbin", "usr/libexec", "etc"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == filepath.Join(root, top) {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			all = append(all, wsFile{path: rel, size: uint64(info.Size())})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(all, func(a, b wsFile) int {
		if a.size != b.size {
			if a.size > b.size {
				return -1
			}
			return 1
		}
		return strings.Compare(a.path, b.path)
	})
	n := min(maxFiles, len(all))
	var window uint64
	for _, f := range all[:n] {
		window += f.size
	}
	start := 0
	for window > maxBytes && start+n < len(all) {
		window += all[start+n].size - all[start].size
		start++
	}
	out := slices.Clone(all[start : start+n])
	// Read in path order, as a boot goes from the loader to its
	// libraries rather than by size.
	slices.SortFunc(out, func(a, b wsFile) int { return strings.Compare(a.path, b.path) })
	return out, nil
}

// bootDirs are directories systemd and udev list at every boot; each Pi
// reads them with READDIRPLUS.
var bootDirs = []string{"etc", "etc/systemd/system", "usr/lib/systemd/system", "usr/lib/udev/rules.d", "etc/udev/rules.d"}

func existingDirs(root string, dirs []string) []string {
	var out []string
	for _, d := range dirs {
		if fi, err := os.Lstat(filepath.Join(root, d)); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}
