package nfsroot

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/test/vm"
)

// TestPjdfstest runs pjdfstest (../shared/third_party, built statically
// here with autoconf, automake and gcc) in a guest, every script as root
// with busybox sh, on the node's root and on a volume (no_root_squash, as
// the scripts switch users themselves), and reports the totals of "ok" and
// "not ok" assertions per file system and the scripts with failures. It
// takes a long while under TCG: only with PICTL_PJDFSTEST=1 (make
// pjdfstest). PICTL_PJDFSTEST_TESTS limits the scripts (a glob below
// tests/, e.g. "chmod/*.t").
func TestPjdfstest(t *testing.T) {
	if os.Getenv("PICTL_PJDFSTEST") == "" {
		t.Skip("slow: set PICTL_PJDFSTEST=1 (make pjdfstest)")
	}
	tarball := os.Getenv("PICTL_PJDFSTEST_TARBALL")
	if tarball == "" {
		tarball, _ = filepath.Abs("../../../shared/third_party/pjdfstest-85a8aea.tar.gz")
	}
	pjd := buildPjdfstest(t, tarball)

	n := vm.NewNet(t, "pjdfstest")
	a := vm.PrepareT(t)
	img := image(t)
	if out, err := exec.Command("cp", "-a", pjd, filepath.Join(img, "opt/pjd")).CombinedOutput(); err != nil {
		t.Fatalf("copy pjdfstest: %v %s", err, out)
	}
	tests := os.Getenv("PICTL_PJDFSTEST_TESTS")
	if tests == "" {
		tests = "*/*.t"
	}
	// Each script runs in a fresh directory of the file system under
	// test; its TAP output is kept in the node's root for the host.
	script := fmt.Sprintf(`run_pjd() {
	fs=$1; top=$2; mkdir -p "$top" /pjd-out/$fs
	for t in /opt/pjd/tests/%s; do
		name=$(echo "${t#/opt/pjd/tests/}" | tr / _)
		d="$top/w.$name"; mkdir -p "$d"; cd "$d"
		timeout 300 sh "$t" > /pjd-out/$fs/$name 2>&1
		cd /; rm -rf "$d"
	done
	echo done > /pjd-out/$fs.done
	sync
}
run_pjd node-root /pjd-work
mkdir -p /mnt/pjd && nfs_mount /volumes/pjd /mnt/pjd "$PXE_NFS_OPTS,nosharecache" && run_pjd volume /mnt/pjd/work && umount /mnt/pjd
`, tests)
	r := roleLayer(t, vm.RootfsSpec{Script: script}, map[string]string{})
	c := newCluster()
	nd := node{"node1", n.GuestAddr(0)}
	vol := filepath.Join(t.TempDir(), "pjd")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	c.volumes["pjd"] = nfsd.Volume{Name: "pjd", Path: vol, Squash: nfsd.SquashNone}
	c.add(nfsd.Node{Name: nd.name, ImageRoot: img, RoleLayer: r, Volumes: []string{"pjd"}}, nd.addr.Addr())
	ctl := startController(t, n, c)
	res := boot(t, n, a, nd, 90*time.Minute, nil)
	out := filepath.Join(ctl.state, "nfsd", "nodes", nd.name, "root", "pjd-out")
	for _, fs := range []string{"node-root", "volume"} {
		if _, err := os.Stat(filepath.Join(out, fs+".done")); err != nil {
			t.Errorf("%s: pjdfstest did not finish", fs)
		}
		files, _ := filepath.Glob(filepath.Join(out, fs, "*"))
		var ok, notOK int
		var failing []string
		for _, f := range files {
			b, _ := os.ReadFile(f)
			bad := 0
			for _, line := range strings.Split(string(b), "\n") {
				switch {
				case strings.HasPrefix(line, "not ok"):
					bad++
					if notOK+bad <= 40 {
						t.Logf("%s %s: %s", fs, filepath.Base(f), line)
					}
				case strings.HasPrefix(line, "ok"):
					ok++
				}
			}
			notOK += bad
			if bad > 0 {
				failing = append(failing, fmt.Sprintf("%s(%d)", filepath.Base(f), bad))
			}
		}
		t.Logf("pjdfstest on %s: %d scripts, %d ok, %d not ok of %d; failing: %s", fs, len(files), ok, notOK, ok+notOK, strings.Join(failing, " "))
	}
	vm.RequirePassed(t, res)
}

// buildPjdfstest unpacks the tarball and builds a static pjdfstest helper;
// it returns the directory holding the helper and tests/.
func buildPjdfstest(t *testing.T, tarball string) string {
	t.Helper()
	for _, tool := range []string{"autoreconf", "gcc", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("pjdfstest needs %s (Debian autoconf, automake, gcc, make)", tool)
		}
	}
	dir := t.TempDir()
	steps := [][]string{
		{"tar", "xzf", tarball, "-C", dir},
		{"sh", "-c", "cd pjdfstest && autoreconf -ifs && ./configure LDFLAGS=-static && make pjdfstest"},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", s, err, out)
		}
	}
	return filepath.Join(dir, "pjdfstest")
}
