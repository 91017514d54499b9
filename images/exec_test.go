package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/images/imagestest"
)

// mountsUnder lists the host's mount points below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

func TestExecInDebootstrapImage(t *testing.T) {
	needTools(t, "tar")
	tarball := imagestest.DebootstrapTar(t)
	s := newStore(t)
	ctx := context.Background()
	m, err := s.Import(ctx, "bookworm", tarball, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != hostArch() || m.OSRelease.VersionCodename != "bookworm" || !m.HasPackage("dpkg") || m.HasPackage("nginx") {
		t.Fatalf("metadata: arch %q os %+v dpkg=%v", m.Arch, m.OSRelease, m.HasPackage("dpkg"))
	}
	if got := m.MissingPackages([]string{"nginx", "bash"}); len(got) != 1 || got[0] != "nginx" {
		t.Errorf("MissingPackages = %v", got)
	}
	if m.Boot.Kind != BootX86 || m.Boot.NFSRoot != "no" {
		t.Errorf("boot info of a kernel-less image: %+v", m.Boot)
	}

	var out bytes.Buffer
	script := `set -e
cat /etc/debian_version
test -r /proc/self/stat; test -c /dev/null; test -d /sys/class/net
echo "$(id -u) $PATH"
echo changed > /root/by-exec
printf 'Package: fake-web\nStatus: install ok installed\nVersion: 9\n\n' >> /var/lib/dpkg/status
test -x /usr/sbin/policy-rc.d`
	if err := s.Exec(ctx, "bookworm", []string{"sh", "-c", script}, ExecOptions{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("exec: %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "12.") || !strings.Contains(out.String(), "0 /usr/local/sbin") {
		t.Errorf("output: %q", out.String())
	}
	if b, _ := os.ReadFile(filepath.Join(m.RootDir, "root/by-exec")); string(b) != "changed\n" {
		t.Errorf("file written by exec: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(m.RootDir, "usr/sbin/policy-rc.d")); !os.IsNotExist(err) {
		t.Errorf("policy-rc.d left in the image: %v", err)
	}
	if mnt := mountsUnder(t, s.Dir); len(mnt) > 0 {
		t.Errorf("mounts left: %v", mnt)
	}
	m2, err := s.Get("bookworm")
	if err != nil || !m2.HasPackage("fake-web") {
		t.Errorf("metadata not refreshed after exec: %v", err)
	}

	// A failing command: its exit status, and no mounts left.
	err = s.Exec(ctx, "bookworm", []string{"sh", "-c", "exit 7"}, ExecOptions{})
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("exit status: %v", err)
	}
	if err := s.Exec(ctx, "bookworm", []string{"no-such-command"}, ExecOptions{}); err == nil {
		t.Error("missing command ran")
	}
	if mnt := mountsUnder(t, s.Dir); len(mnt) > 0 {
		t.Errorf("mounts left after failure: %v", mnt)
	}

	// Remove is refused while exec runs and while nodes use the image.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var catOut bytes.Buffer
	go func() {
		done <- s.Exec(ctx, "bookworm", []string{"cat"}, ExecOptions{Stdin: pr, Stdout: &catOut, NoRefresh: true})
	}()
	pw.Write([]byte("x")) // returns once cat (running) has read it
	if err := s.Remove("bookworm"); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove during exec: %v", err)
	}
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("exec did not end")
	}
	s.InUse = func(image string) []string { return []string{"pi3", "pi4"} }
	var iu *InUseError
	if err := s.Remove("bookworm"); !errors.As(err, &iu) || len(iu.Nodes) != 2 {
		t.Errorf("Remove in use: %v", err)
	}
	s.InUse = nil
	if err := s.Remove("bookworm"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("bookworm"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if err := s.Remove("bookworm"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
}
