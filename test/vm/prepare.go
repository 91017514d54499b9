package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

//go:embed scripts/build-initramfs.sh
var initramfsScript []byte

// DefaultModules are the kernel modules the initramfs loads (with their
// dependencies, resolved from each module's depends= field): QEMU's
// virtio-net and e1000 NICs and the NFSv3 client.
var DefaultModules = []string{"virtio_pci", "virtio_net", "e1000", "nfsv3"}

// Options tune Prepare. The zero value is what tests want.
type Options struct {
	// CacheDir holds the artefacts; default $PICTL_TEST_CACHE, else
	// <repo>/.cache/vm.
	CacheDir string
	// KernelPackage is the Debian binary package with the kernel; default
	// $PICTL_TEST_KERNEL_PKG, else whatever linux-image-amd64 depends on.
	KernelPackage string
	// Busybox is a static busybox put into the initramfs; default /bin/busybox.
	Busybox string
	// Modules replaces DefaultModules.
	Modules []string
	// Logf receives one line per preparation step with its duration;
	// default: discard.
	Logf func(format string, args ...any)
}

// Artifacts are the prepared, cached boot files. Paths are absolute and
// shared by every test: never modify the files.
type Artifacts struct {
	CacheDir       string
	KernelPackage  string // e.g. linux-image-6.1.0-56-amd64
	KernelVersion  string // Debian version of that package, e.g. 6.1.192-2
	KernelRelease  string // uname -r, e.g. 6.1.0-56-amd64
	KernelDeb      string // the downloaded .deb (modules for a Debian image come from here)
	Vmlinuz        string // bzImage as shipped (for iPXE and -kernel)
	Vmlinux        string // uncompressed ELF with a PVH entry: fastest -kernel boot under TCG
	Initrd         string // busybox initramfs (see scripts/build-initramfs.sh)
	Busybox        string
	PrepareTook    time.Duration
	BuiltSomething bool // false when everything came from the cache
}

// Prepare downloads Debian's kernel package (apt-get download), extracts the
// kernel and an uncompressed vmlinux, and builds the busybox initramfs, each
// once: results are cached under CacheDir keyed by the kernel package
// version and, for the initramfs, by the build script, busybox binary and
// module list. Concurrent callers (several test processes) wait for each
// other on a file lock; artefacts appear atomically.
func Prepare(ctx context.Context, o Options) (*Artifacts, error) {
	start := time.Now()
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	a := &Artifacts{CacheDir: o.CacheDir, Busybox: o.Busybox, KernelPackage: o.KernelPackage}
	if a.CacheDir == "" {
		a.CacheDir = defaultCacheDir()
	}
	if a.Busybox == "" {
		a.Busybox = "/bin/busybox"
	}
	if a.KernelPackage == "" {
		a.KernelPackage = os.Getenv("PICTL_TEST_KERNEL_PKG")
	}
	modules := o.Modules
	if len(modules) == 0 {
		modules = DefaultModules
	}
	var err error
	if a.CacheDir, err = filepath.Abs(a.CacheDir); err != nil {
		return nil, err
	}
	if a.KernelPackage, a.KernelVersion, err = resolveKernel(ctx, a.CacheDir, a.KernelPackage); err != nil {
		return nil, err
	}
	// Both steps need the extracted package; on a first run extract it once.
	var kroot string
	extract := func(deb string) (string, error) {
		if kroot != "" {
			return kroot, nil
		}
		t0 := time.Now()
		if err := os.MkdirAll(a.CacheDir, 0o755); err != nil {
			return "", err
		}
		removeStale(filepath.Join(a.CacheDir, ".kroot-*"), time.Hour)
		work, err := os.MkdirTemp(a.CacheDir, ".kroot-")
		if err != nil {
			return "", err
		}
		if _, err := run(ctx, "", "dpkg", "-x", deb, work); err != nil {
			os.RemoveAll(work)
			return "", err
		}
		logf("vm: dpkg -x %s: %v", filepath.Base(deb), time.Since(t0).Round(time.Millisecond))
		kroot = work
		return kroot, nil
	}
	defer func() {
		if kroot != "" {
			os.RemoveAll(kroot)
		}
	}()
	kdir := filepath.Join(a.CacheDir, "kernel", safeName(a.KernelPackage+"_"+a.KernelVersion))
	t0 := time.Now()
	built, err := ensure(kdir, func(tmp string) error { return buildKernelDir(ctx, tmp, a.KernelPackage, extract, logf) })
	if err != nil {
		return nil, fmt.Errorf("prepare kernel %s %s: %w", a.KernelPackage, a.KernelVersion, err)
	}
	if built {
		a.BuiltSomething = true
		logf("vm: kernel %s %s prepared in %v (%s)", a.KernelPackage, a.KernelVersion, time.Since(t0).Round(time.Millisecond), kdir)
	}
	a.KernelDeb = filepath.Join(kdir, "kernel.deb")
	a.Vmlinuz = filepath.Join(kdir, "vmlinuz")
	a.Vmlinux = filepath.Join(kdir, "vmlinux")
	rel, err := os.ReadFile(filepath.Join(kdir, "release"))
	if err != nil {
		return nil, fmt.Errorf("kernel cache %s: %w", kdir, err)
	}
	a.KernelRelease = strings.TrimSpace(string(rel))

	key, err := initramfsKey(a.Busybox, modules)
	if err != nil {
		return nil, err
	}
	a.Initrd = filepath.Join(a.CacheDir, "initrd", safeName(a.KernelPackage+"_"+a.KernelVersion)+"-"+key+".img")
	t0 = time.Now()
	built, err = ensure(a.Initrd, func(tmp string) error {
		kr, err := extract(a.KernelDeb)
		if err != nil {
			return err
		}
		return buildInitramfs(ctx, kr, a.Busybox, modules, tmp, logf)
	})
	if err != nil {
		return nil, fmt.Errorf("prepare initramfs: %w", err)
	}
	if built {
		a.BuiltSomething = true
		logf("vm: initramfs prepared in %v (%s)", time.Since(t0).Round(time.Millisecond), a.Initrd)
	}
	a.PrepareTook = time.Since(start)
	return a, nil
}

// PrepareT is Prepare for tests: it skips the test when the host lacks the
// tools (apt, dpkg, busybox, xz), fails it on any other error and logs the
// preparation cost.
func PrepareT(t testing.TB) *Artifacts {
	t.Helper()
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg", "xz", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("vm: needs %s (Debian) to prepare the guest kernel", tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("vm: needs /bin/busybox (Debian busybox-static)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	a, err := Prepare(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("vm: prepare artefacts: %v", err)
	}
	if a.BuiltSomething {
		t.Logf("vm: first-run preparation took %v (cache %s)", a.PrepareTook.Round(time.Millisecond), a.CacheDir)
	} else {
		t.Logf("vm: artefacts from cache in %v (kernel %s)", a.PrepareTook.Round(time.Millisecond), a.KernelRelease)
	}
	return a
}

// resolveKernel names the kernel package (pkg, or linux-image-amd64's
// dependency when empty) and its candidate version. apt-cache costs ~0.5 s
// per call, so the answer is remembered in the cache until apt's package
// lists change.
func resolveKernel(ctx context.Context, cacheDir, pkg string) (name, version string, err error) {
	memoName := pkg
	if memoName == "" {
		memoName = "linux-image-amd64"
	}
	memo := filepath.Join(cacheDir, "kernel", "resolved-"+safeName(memoName))
	if st, err := os.Stat(memo); err == nil && !aptListsNewerThan(st.ModTime()) {
		if f := strings.Fields(readFileString(memo)); len(f) == 2 {
			return f[0], f[1], nil
		}
	}
	name = pkg
	if name == "" {
		if name, err = resolveKernelPackage(ctx); err != nil {
			return "", "", err
		}
	}
	if version, err = packageVersion(ctx, name); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Dir(memo), 0o755); err == nil {
		tmp := fmt.Sprintf("%s.tmp-%d", memo, os.Getpid())
		if os.WriteFile(tmp, []byte(name+" "+version+"\n"), 0o644) == nil {
			_ = os.Rename(tmp, memo)
		}
	}
	return name, version, nil
}

// aptListsNewerThan reports whether apt's package lists changed after t
// (apt-get update replaces the files, which also touches the directory).
func aptListsNewerThan(t time.Time) bool {
	const lists = "/var/lib/apt/lists"
	st, err := os.Stat(lists)
	if err != nil {
		return true
	}
	if st.ModTime().After(t) {
		return true
	}
	files, _ := filepath.Glob(filepath.Join(lists, "*_Packages*"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(t) {
			return true
		}
	}
	return false
}

func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

var kernelDepRE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s]*)`)

func resolveKernelPackage(ctx context.Context) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return "", fmt.Errorf("resolve kernel package (did apt-get update run?): %w", err)
	}
	m := kernelDepRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("resolve kernel package: no linux-image-N dependency in:\n%s", out)
	}
	return m[1], nil
}

var versionRE = regexp.MustCompile(`(?m)^Version:\s*(\S+)`)

func packageVersion(ctx context.Context, pkg string) (string, error) {
	out, err := run(ctx, "", "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", fmt.Errorf("version of %s: %w", pkg, err)
	}
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("version of %s: none in apt-cache show", pkg)
	}
	return m[1], nil
}

// buildKernelDir fills dir with kernel.deb, vmlinuz, vmlinux and release.
func buildKernelDir(ctx context.Context, dir, pkg string, extract func(deb string) (string, error), logf func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := run(ctx, dir, "apt-get", "download", pkg); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	if err := os.Rename(debs[0], filepath.Join(dir, "kernel.deb")); err != nil {
		return err
	}
	logf("vm: apt-get download %s: %v", pkg, time.Since(t0).Round(time.Millisecond))
	kroot, err := extract(filepath.Join(dir, "kernel.deb"))
	if err != nil {
		return err
	}
	images, _ := filepath.Glob(filepath.Join(kroot, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return fmt.Errorf("%s ships %d boot/vmlinuz-* files", pkg, len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	if err := copyFile(images[0], filepath.Join(dir, "vmlinuz")); err != nil {
		return err
	}
	t0 = time.Now()
	if err := extractVmlinux(ctx, filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "vmlinux")); err != nil {
		return err
	}
	logf("vm: vmlinux extracted: %v", time.Since(t0).Round(time.Millisecond))
	return os.WriteFile(filepath.Join(dir, "release"), []byte(release+"\n"), 0o644)
}

// extractVmlinux decompresses the ELF kernel embedded in a bzImage. The
// payload is followed by trailing data the decompressor complains about, so
// success is judged by the output: a complete ELF whose segments all fit.
func extractVmlinux(ctx context.Context, bzImage, out string) error {
	img, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	decoders := []struct {
		magic []byte
		cmd   []string
	}{
		{[]byte("\xfd7zXZ\x00"), []string{"xz", "-dcq"}},
		{[]byte("\x28\xb5\x2f\xfd"), []string{"zstd", "-dcq"}},
		{[]byte("\x1f\x8b\x08"), []string{"gzip", "-dcq"}},
	}
	for _, d := range decoders {
		for from := 0; ; {
			i := bytes.Index(img[from:], d.magic)
			if i < 0 {
				break
			}
			from += i
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			cmd := exec.CommandContext(ctx, d.cmd[0], d.cmd[1:]...)
			cmd.Stdin, cmd.Stdout = bytes.NewReader(img[from:]), f
			_ = cmd.Run() // trailing garbage makes it fail; the ELF check decides
			f.Close()
			if validELF(out) {
				return nil
			}
			from++
		}
	}
	_ = os.Remove(out)
	return fmt.Errorf("no decompressible ELF kernel found in %s", bzImage)
}

func validELF(path string) bool {
	st, err := os.Stat(path)
	if err != nil || st.Size() < 1<<20 {
		return false
	}
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Off+p.Filesz > uint64(st.Size()) {
			return false
		}
	}
	return len(f.Progs) > 0
}

func initramfsKey(busybox string, modules []string) (string, error) {
	h := sha256.New()
	h.Write(initramfsScript)
	fmt.Fprintf(h, "\nmodules=%s\n", strings.Join(modules, " "))
	bb, err := os.Open(busybox)
	if err != nil {
		return "", fmt.Errorf("busybox for the initramfs: %w", err)
	}
	defer bb.Close()
	if _, err := io.Copy(h, bb); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func buildInitramfs(ctx context.Context, kroot, busybox string, modules []string, out string, logf func(string, ...any)) error {
	work, err := os.MkdirTemp(filepath.Dir(out), ".initramfs-work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	script := filepath.Join(work, "build-initramfs.sh")
	if err := os.WriteFile(script, initramfsScript, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "sh", script, kroot, out)
	cmd.Env = append(os.Environ(), "BUSYBOX="+busybox, "WANT_MODULES="+strings.Join(modules, " "))
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build-initramfs.sh: %w\n%s", err, b)
	}
	logf("vm: %s", strings.TrimSpace(string(b)))
	return nil
}

func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._+-]`)

func safeName(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// removeStale deletes leftovers of killed runs matching pattern that are
// older than age (younger ones may belong to a run in progress).
func removeStale(pattern string, age time.Duration) {
	old, _ := filepath.Glob(pattern)
	for _, o := range old {
		if st, err := os.Stat(o); err == nil && time.Since(st.ModTime()) > age {
			_ = os.RemoveAll(o)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
