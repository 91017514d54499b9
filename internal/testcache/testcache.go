// Package testcache keeps what the tests build once per machine — kernels,
// initramfs images, a debootstrapped Debian tree — under .cache/ at the
// root of the module, so that `make test` pays for them on the first run
// only.
package testcache

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ModuleRoot walks up from the working directory (tests run in their
// package's directory) to the go.mod of github.com/pictl/pictl.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/pictl/pictl\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the github.com/pictl/pictl module")
		}
		dir = parent
	}
}

// Dir is $env when set, else <module root>/.cache/<sub>, else a directory
// under the system's temporary directory.
func Dir(sub, env string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	if root, err := ModuleRoot(); err == nil {
		return filepath.Join(root, ".cache", sub)
	}
	return filepath.Join(os.TempDir(), "pictl-"+sub+"-cache")
}

// DebianCacheEnv overrides where the Debian tree is cached.
const DebianCacheEnv = "PICTL_DEBIAN_CACHE"

// DebianPackages are added to debootstrap's minbase: systemd as PID 1 and
// udev, without which no device unit ever appears and systemd waits 90 s
// for dev-ttyS0.device before the serial getty (and multi-user.target).
var DebianPackages = []string{"systemd-sysv", "udev"}

// DebianTarName is the cached archive's name; it carries the package list
// so that a change rebuilds it.
func DebianTarName() string {
	return "debootstrap-bookworm-minbase+" + strings.Join(DebianPackages, "+") + ".tar"
}

// DebianTar returns a tar archive (POSIX format, numeric owners, xattrs)
// of `debootstrap --variant=minbase --include=systemd-sysv,udev bookworm`
// for the host's architecture, building it on first use from the mirror
// apt uses (about a minute; flock-protected across processes). One tree
// serves the image tests, the image benchmark and the e2e boots.
func DebianTar(ctx context.Context, logf func(string, ...any)) (string, error) {
	dir := Dir("debian", DebianCacheEnv)
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
	defer lock.Close() // closing releases the flock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil // another process built it while we waited
	}
	work, err := os.MkdirTemp(dir, "debootstrap-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	mirror := AptMirror()
	include := strings.Join(DebianPackages, ",")
	t0 := time.Now()
	logf("debootstrap --variant=minbase --include=%s bookworm from %s (first run only)", include, mirror)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+include, "bookworm", root, mirror)
	if b, err := cmd.CombinedOutput(); err != nil {
		tail := string(b)
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return "", fmt.Errorf("debootstrap from %s: %w\n%s", mirror, err, tail)
	}
	logf("debootstrap took %v", time.Since(t0).Round(time.Second))
	// Leave no apt cache: it is large and no test reads it.
	_ = os.RemoveAll(filepath.Join(root, "var/cache/apt/archives"))
	_ = os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	tmp := out + ".tmp-" + hex.EncodeToString(rnd[:])
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

// AptMirror returns the first Debian archive URI apt is configured with
// (deb822 .sources or one-line .list), defaulting to deb.debian.org.
func AptMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	files = append(files, more...)
	for _, f := range files {
		if uri := debianURI(f); uri != "" {
			return uri
		}
	}
	return "http://deb.debian.org/debian"
}

func debianURI(file string) string {
	fh, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var uri string
		if u, ok := strings.CutPrefix(line, "URIs:"); ok {
			uri = strings.Fields(u + " ")[0]
		} else if strings.HasPrefix(line, "deb ") {
			for _, f := range strings.Fields(line)[1:] {
				if strings.Contains(f, "://") {
					uri = f
					break
				}
			}
		}
		if uri != "" && strings.HasSuffix(strings.TrimRight(uri, "/"), "/debian") {
			return uri
		}
	}
	return ""
}
