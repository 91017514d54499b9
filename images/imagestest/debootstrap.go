// Package imagestest provides test fixtures for code that needs a real
// root filesystem: a Debian bookworm minbase tree made by debootstrap,
// cached as a tar archive so it is built once per machine.
package imagestest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// CacheEnv overrides the cache directory (default <repo>/.cache/images).
const CacheEnv = "PICTL_IMAGES_CACHE"

// DebootstrapTarName is the cached archive's file name.
const DebootstrapTarName = "debootstrap-bookworm-minbase.tar"

// CacheDir returns the fixture cache directory.
func CacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	if root, err := moduleRoot(); err == nil {
		return filepath.Join(root, ".cache", "images")
	}
	return filepath.Join(os.TempDir(), "pictl-images-cache")
}

func moduleRoot() (string, error) {
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

// DebootstrapTar returns the path of a tar archive (numeric owners,
// xattrs) of `debootstrap --variant=minbase bookworm` for the host's
// architecture, building it on first use from the mirror apt uses. It
// skips the test when debootstrap is missing or the mirror is unreachable.
func DebootstrapTar(t testing.TB) string {
	t.Helper()
	p, err := EnsureDebootstrapTar()
	if err != nil {
		t.Skipf("debootstrap fixture unavailable: %v", err)
	}
	return p
}

// EnsureDebootstrapTar builds the cached archive if needed (flock-protected
// across processes) and returns its path.
func EnsureDebootstrapTar() (string, error) {
	dir := CacheDir()
	out := filepath.Join(dir, DebootstrapTarName)
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
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	work, err := os.MkdirTemp(dir, "debootstrap-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	mirror := AptMirror()
	cmd := exec.Command("debootstrap", "--variant=minbase", "bookworm", root, mirror)
	if b, err := cmd.CombinedOutput(); err != nil {
		tail := string(b)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return "", fmt.Errorf("debootstrap from %s: %v\n%s", mirror, err, tail)
	}
	// Leave no apt cache and make the archive reproducible enough.
	os.RemoveAll(filepath.Join(root, "var/cache/apt/archives"))
	os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755)
	tmp := filepath.Join(work, "root.tar")
	tarCmd := exec.Command("tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", root, "-cpf", tmp, ".")
	if b, err := tarCmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar: %v\n%s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
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
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
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
				fh.Close()
				return uri
			}
		}
		fh.Close()
	}
	return "http://deb.debian.org/debian"
}
