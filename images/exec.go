package images

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// ErrForeignArch: the image's architecture cannot run here without
// qemu-user-static's binfmt handlers.
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

var qemuNames = map[string]string{
	"arm64": "aarch64", "armhf": "arm", "armel": "arm", "amd64": "x86_64",
	"i386": "i386", "riscv64": "riscv64", "ppc64el": "ppc64le", "s390x": "s390x",
}

// checkArch makes sure the kernel can run the image's binaries: natively,
// or through a binfmt_misc handler registered with the F (fix binary)
// flag, which keeps the interpreter usable inside the chroot. Debian's
// qemu-user-static registers its handlers that way.
func checkArch(arch string) error {
	host := hostArch()
	if arch == "" || arch == host || (host == "amd64" && arch == "i386") || (host == "arm64" && (arch == "armhf" || arch == "armel")) {
		return nil
	}
	q := qemuNames[arch]
	if q == "" {
		return fmt.Errorf("%w: no known emulator for %s", ErrForeignArch, arch)
	}
	b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-" + q)
	if err != nil {
		return fmt.Errorf("%w: image is %s, host is %s; install Debian's qemu-user-static and binfmt-support (no binfmt handler qemu-%s)", ErrForeignArch, arch, host, q)
	}
	s := string(b)
	if !strings.HasPrefix(s, "enabled") {
		return fmt.Errorf("%w: binfmt handler qemu-%s is disabled", ErrForeignArch, q)
	}
	for _, line := range strings.Split(s, "\n") {
		if f, ok := strings.CutPrefix(line, "flags: "); ok && strings.Contains(f, "F") {
			return nil
		}
	}
	return fmt.Errorf("%w: binfmt handler qemu-%s lacks the F flag, so it cannot work inside a chroot", ErrForeignArch, q)
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
	if err := checkArch(m.Arch); err != nil {
		return err
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
