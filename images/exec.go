package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecOptions are the standard streams and extra environment of Exec.
type ExecOptions struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Env is added to a minimal environment (PATH, HOME, TERM, LANG,
	// DEBIAN_FRONTEND=noninteractive).
	Env []string
	// NoRefresh skips re-preparing the image and re-reading its metadata
	// after the command.
	NoRefresh bool
}

// ErrForeignArch: the image's architecture cannot run here: no
// binfmt_misc handler for it is registered and none can be registered
// from Debian's qemu-user-static.
var ErrForeignArch = errors.New("image architecture needs an emulator")

// hostArch maps GOARCH to Debian's architecture names.
func hostArch() string {
	switch runtime.GOARCH {
	case "arm":
		return "armhf"
	case "386":
		return "i386"
	}
	return runtime.GOARCH
}

// runsNatively reports whether the host CPU runs binaries of a Debian
// architecture without an emulator.
func runsNatively(arch string) bool {
	host := hostArch()
	return arch == "" || arch == host ||
		(host == "amd64" && arch == "i386") ||
		(host == "arm64" && (arch == "armhf" || arch == "armel"))
}

// qemuName is the qemu-user name (and binfmt handler suffix) for a Debian
// architecture, "" when qemu-user-static has none.
func qemuName(arch string) string {
	switch arch {
	case "arm64":
		return "aarch64"
	case "armhf", "armel":
		return "arm"
	case "amd64":
		return "x86_64"
	case "i386", "riscv64", "s390x":
		return arch
	case "ppc64el":
		return "ppc64le"
	}
	return ""
}

// binfmtMisc is the kernel's binfmt_misc filesystem, the part of it
// image exec touches; tests fake it.
type binfmtMisc interface {
	// Mount mounts binfmt_misc if it is not mounted yet.
	Mount() error
	// Entry returns the handler's status file ("enabled\ninterpreter
	// ...\nflags: OCF\n..."), an fs.ErrNotExist error when no handler of
	// that name is registered.
	Entry(name string) (string, error)
	// Register writes a ":name:type:offset:magic:mask:interpreter:flags"
	// line to the register file.
	Register(line string) error
	// Enable enables a registered, disabled handler.
	Enable(name string) error
}

// kernelBinfmt is binfmtMisc on the real /proc/sys/fs/binfmt_misc.
type kernelBinfmt struct{ dir string }

func (k kernelBinfmt) Mount() error {
	if _, err := os.Stat(filepath.Join(k.dir, "register")); err == nil {
		return nil
	}
	err := unix.Mount("binfmt_misc", k.dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	// Lost a race with another mount: fine if it is there now.
	if _, serr := os.Stat(filepath.Join(k.dir, "register")); serr == nil {
		return nil
	}
	if err == nil {
		err = errors.New("no register file after mounting")
	} else if errors.Is(err, unix.ENOENT) {
		err = fmt.Errorf("%w (is the binfmt_misc module loaded?)", err)
	}
	return fmt.Errorf("mount binfmt_misc on %s: %w", k.dir, err)
}

func (k kernelBinfmt) Entry(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(k.dir, name))
	return string(b), err
}

func (k kernelBinfmt) Register(line string) error {
	return os.WriteFile(filepath.Join(k.dir, "register"), []byte(line), 0)
}

func (k kernelBinfmt) Enable(name string) error {
	return os.WriteFile(filepath.Join(k.dir, name), []byte("1"), 0)
}

// emulation makes foreign-arch images runnable through qemu-user-static's
// binfmt handlers, registering them from the package's configuration when
// nothing did at boot (no systemd-binfmt, binfmt_misc not even mounted, as
// in containers and minimal VMs).
type emulation struct {
	misc binfmtMisc
	// confDirs hold systemd binfmt.d files, in precedence order: the first
	// qemu-<name>.conf found is used.
	confDirs []string
	// binfmtsDir holds update-binfmts (binfmt-support) format files, read
	// when no binfmt.d file exists.
	binfmtsDir string
	log        *slog.Logger
}

func hostEmulation(log *slog.Logger) *emulation {
	return &emulation{
		misc:       kernelBinfmt{dir: "/proc/sys/fs/binfmt_misc"},
		confDirs:   []string{"/etc/binfmt.d", "/run/binfmt.d", "/usr/local/lib/binfmt.d", "/usr/lib/binfmt.d", "/lib/binfmt.d"},
		binfmtsDir: "/usr/share/binfmts",
		log:        log,
	}
}

// ensure makes sure the kernel can run the image's binaries inside the
// chroot: natively, or through an enabled binfmt_misc handler with the F
// (fix binary) flag. F makes the kernel open the interpreter when the
// handler is registered, so it works inside any chroot and nothing has to
// be copied into the image.
func (e *emulation) ensure(arch string) error {
	if runsNatively(arch) {
		return nil
	}
	q := qemuName(arch)
	if q == "" {
		return fmt.Errorf("%w: no qemu-user emulator for %s images", ErrForeignArch, arch)
	}
	name := "qemu-" + q
	if err := e.misc.Mount(); err != nil {
		return fmt.Errorf("%w: %s image on a %s host: %w", ErrForeignArch, arch, hostArch(), err)
	}
	entry, err := e.misc.Entry(name)
	if errors.Is(err, fs.ErrNotExist) {
		if err := e.register(arch, name); err != nil {
			return err
		}
		entry, err = e.misc.Entry(name)
	}
	if err != nil {
		return fmt.Errorf("%w: read binfmt handler %s: %w", ErrForeignArch, name, err)
	}
	h := parseBinfmtEntry(entry)
	if !strings.ContainsRune(h.flags, 'F') {
		return fmt.Errorf("%w: binfmt handler %s (%s) lacks the F flag, so its interpreter is not found inside the image's chroot; "+
			"remove it (echo -1 > /proc/sys/fs/binfmt_misc/%s) and pictl registers qemu-user-static's with F",
			ErrForeignArch, name, h.interpreter, name)
	}
	if !h.enabled {
		if err := e.misc.Enable(name); err != nil {
			return fmt.Errorf("%w: enable binfmt handler %s: %w", ErrForeignArch, name, err)
		}
		e.log.Info("image exec: enabled binfmt handler", "handler", name)
	}
	return nil
}

// register registers qemu-user-static's handler, always with the F flag.
func (e *emulation) register(arch, name string) error {
	line, src, err := e.handlerLine(name)
	if err != nil {
		return fmt.Errorf("%w: %s image on a %s host needs Debian's qemu-user-static (apt-get install qemu-user-static): %w",
			ErrForeignArch, arch, hostArch(), err)
	}
	h, err := parseRegisterLine(line)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrForeignArch, src, err)
	}
	if _, err := os.Stat(h.interpreter); err != nil {
		return fmt.Errorf("%w: interpreter of %s is missing, reinstall Debian's qemu-user-static: %w", ErrForeignArch, src, err)
	}
	if !strings.ContainsRune(h.flags, 'F') {
		if !h.hasFlags {
			line += line[:1]
		}
		line += "F"
	}
	if err := e.misc.Register(line); err != nil && !errors.Is(err, fs.ErrExist) {
		// EEXIST: a concurrent exec registered it first.
		return fmt.Errorf("%w: register binfmt handler %s from %s: %w", ErrForeignArch, name, src, err)
	}
	e.log.Info("image exec: registered binfmt handler", "handler", name, "from", src, "interpreter", h.interpreter)
	return nil
}

// handlerLine finds the register line for handler name in the binfmt.d
// directories, or builds it from an update-binfmts format file.
func (e *emulation) handlerLine(name string) (line, src string, err error) {
	for _, d := range e.confDirs {
		p := filepath.Join(d, name+".conf")
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || l[0] == '#' || l[0] == ';' {
				continue
			}
			if h, err := parseRegisterLine(l); err == nil && h.name == name {
				return l, p, nil
			}
		}
		return "", "", fmt.Errorf("%s has no %s line", p, name)
	}
	p := filepath.Join(e.binfmtsDir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", "", fmt.Errorf("no %s.conf in %s and no %s", name, strings.Join(e.confDirs, ", "), p)
	}
	line, err = binfmtsToLine(name, string(b))
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", p, err)
	}
	return line, p, nil
}

// binfmtHandler is what image exec needs to know of a handler.
type binfmtHandler struct {
	name, interpreter, flags string
	enabled                  bool
	// hasFlags: the register line has a flags field.
	hasFlags bool
}

// parseRegisterLine splits ":name:type:offset:magic:mask:interpreter:flags";
// the first character is the delimiter.
func parseRegisterLine(l string) (binfmtHandler, error) {
	if len(l) < 2 {
		return binfmtHandler{}, errors.New("empty binfmt register line")
	}
	f := strings.Split(l[1:], l[:1])
	if len(f) < 6 || f[0] == "" || f[5] == "" {
		return binfmtHandler{}, fmt.Errorf("malformed binfmt register line %q", l)
	}
	h := binfmtHandler{name: f[0], interpreter: f[5]}
	if len(f) > 6 {
		h.flags, h.hasFlags = f[6], true
	}
	return h, nil
}

// parseBinfmtEntry reads a handler's status file under binfmt_misc.
func parseBinfmtEntry(s string) binfmtHandler {
	var h binfmtHandler
	for _, line := range strings.Split(s, "\n") {
		switch {
		case line == "enabled":
			h.enabled = true
		case strings.HasPrefix(line, "interpreter "):
			h.interpreter = strings.TrimPrefix(line, "interpreter ")
		case strings.HasPrefix(line, "flags: "):
			h.flags = strings.TrimPrefix(line, "flags: ")
		}
	}
	return h
}

// binfmtsToLine turns an update-binfmts format file (binfmt-support's
// /usr/share/binfmts/NAME, "key value" lines) into a register line.
func binfmtsToLine(name, s string) (string, error) {
	kv := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			kv[k] = strings.TrimSpace(v)
		}
	}
	if kv["interpreter"] == "" || kv["magic"] == "" {
		return "", errors.New("no interpreter or magic")
	}
	flags := "F"
	if kv["credentials"] == "yes" {
		flags += "C"
	}
	if kv["preserve"] == "yes" {
		flags += "P"
	}
	return fmt.Sprintf(":%s:M:%s:%s:%s:%s:%s", name, kv["offset"], kv["magic"], kv["mask"], kv["interpreter"], flags), nil
}

// policyRC stops package scripts from starting daemons inside the image
// (there is no init running in the chroot).
const policyRC = "#!/bin/sh\n# pictl image exec: do not start services in the image\nexit 101\n"

// Exec runs argv inside the image's root: chroot with /proc, /sys and /dev
// (and a tmpfs /run, the host's resolv.conf, and for Pi images the boot
// directory on /boot/firmware) mounted in a private mount namespace that
// the kernel discards when the command exits, so nothing stays mounted
// even if pictl is killed. Changes to the root are what every node on the
// image sees. The command's exit status comes back as *exec.ExitError.
func (s *Store) Exec(ctx context.Context, name string, argv []string, opt ExecOptions) error {
	if len(argv) == 0 {
		return errors.New("image exec: no command")
	}
	unlock, err := s.lock(name, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.Get(name)
	if err != nil {
		return err
	}
	if err := hostEmulation(s.log()).ensure(m.Arch); err != nil {
		return fmt.Errorf("image exec %s: %w", name, err)
	}
	root := m.RootDir
	path, err := lookPathInRoot(root, argv[0])
	if err != nil {
		return err
	}
	policy, err := resolveParentInRoot(root, "/usr/sbin/policy-rc.d")
	if err != nil {
		return err
	}
	if _, err := os.Lstat(policy); os.IsNotExist(err) {
		if _, err := os.Stat(filepath.Dir(policy)); err == nil {
			if err := os.WriteFile(policy, []byte(policyRC), 0o755); err != nil {
				return err
			}
			defer os.Remove(policy)
		}
	}

	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Dir:    "/",
		Stdin:  opt.Stdin,
		Stdout: opt.Stdout,
		Stderr: opt.Stderr,
		Env: append([]string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/root",
			"TERM=" + envOr("TERM", "dumb"),
			"LANG=C.UTF-8",
			"DEBIAN_FRONTEND=noninteractive",
		}, opt.Env...),
		SysProcAttr: &syscall.SysProcAttr{Chroot: root, Setpgid: true},
	}
	if err := startInPrivateMounts(cmd, func() error { return mountExecFS(m) }); err != nil {
		return fmt.Errorf("image exec %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		case <-done:
		}
	}()
	runErr := cmd.Wait()
	close(done)
	if !opt.NoRefresh {
		if _, err := s.refresh(name); err != nil {
			return errors.Join(runErr, fmt.Errorf("image exec %s: refresh metadata: %w", name, err))
		}
	}
	return runErr
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// mountExecFS mounts the pseudo filesystems under the image root; it runs
// inside the private mount namespace.
func mountExecFS(m *Meta) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("image exec: make mounts private: %w", err)
	}
	target := func(p string) (string, error) {
		t, err := resolveInRoot(m.RootDir, p)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(t, 0o755); err != nil {
			return "", err
		}
		return t, nil
	}
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"/sys", "/sys", "", unix.MS_BIND | unix.MS_REC},
		{"/dev", "/dev", "", unix.MS_BIND | unix.MS_REC},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV},
	}
	for _, mt := range mounts {
		t, err := target(mt.dst)
		if err != nil {
			return fmt.Errorf("image exec: %s: %w", mt.dst, err)
		}
		if err := unix.Mount(mt.src, t, mt.fstype, mt.flags, ""); err != nil {
			return fmt.Errorf("image exec: mount %s: %w", mt.dst, err)
		}
	}
	// Name resolution for apt: the host's resolv.conf over the image's.
	if rc, err := resolveInRoot(m.RootDir, "/etc/resolv.conf"); err == nil && strings.HasPrefix(rc, m.RootDir+"/") {
		if _, err := os.Stat("/etc/resolv.conf"); err == nil {
			if _, err := os.Stat(rc); os.IsNotExist(err) {
				os.MkdirAll(filepath.Dir(rc), 0o755)
				if f, err := os.OpenFile(rc, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
					f.Close()
				}
			}
			if err := unix.Mount("/etc/resolv.conf", rc, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("image exec: bind resolv.conf: %w", err)
			}
		}
	}
	// Kernel packages on a Pi image install into the firmware partition.
	if m.Boot.Kind == BootPi {
		for _, d := range []string{"/boot/firmware", "/boot"} {
			t, err := resolveInRoot(m.RootDir, d)
			if err != nil {
				continue
			}
			if fi, err := os.Stat(t); err == nil && fi.IsDir() {
				if d == "/boot" {
					if empty, _ := dirEmpty(t); !empty {
						break
					}
				}
				if err := unix.Mount(m.BootDir, t, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("image exec: bind boot directory: %w", err)
				}
				break
			}
		}
	}
	return nil
}

// lookPathInRoot finds a command as the image's PATH would.
func lookPathInRoot(root, name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p, err := resolveInRoot(root, dir+"/"+name)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return dir + "/" + name, nil
		}
	}
	return "", fmt.Errorf("image exec: %s: command not found in the image", name)
}

// startInPrivateMounts starts cmd from an OS thread that first moves into
// a new mount namespace and runs setup there; the child inherits the
// namespace. The thread is never unlocked, so Go ends it when its
// goroutine returns, and the namespace (with every mount setup made)
// lives only as long as the command. The process's main thread is kept
// out of it: Go never ends that thread, so it would pin the mounts.
func startInPrivateMounts(cmd *exec.Cmd, setup func() error) error {
	started := make(chan error, 1)
	var work func()
	work = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// On the main thread: hold it so the retry lands elsewhere,
			// then give it back untouched.
			done := make(chan struct{})
			go func() { work(); close(done) }()
			<-done
			runtime.UnlockOSThread()
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			started <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		if err := setup(); err != nil {
			started <- err
			return
		}
		started <- cmd.Start()
	}
	go work()
	return <-started
}
