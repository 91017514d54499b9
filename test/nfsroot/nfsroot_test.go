// Package nfsroot proves pictl's nfsd with the real Linux NFS client: QEMU
// guests (test/vm) boot with their root mounted from nfsd's /nodes/<name>
// export and run file system checks in their init.
package nfsroot

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/test/vm"
)

// image builds the shared image: test/vm's busybox rootfs plus files the
// checks use. Its /sbin/init is not used: each node boots with a role layer
// holding its own /sbin/init (which also exercises role layers).
func image(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "image")
	if err := vm.BuildRootfs(img, vm.RootfsSpec{Hostname: "image"}); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/image-name":  "img1\n",
		"etc/image-conf":  "key=1\n",
		"etc/image-motd":  "from the image\n",
		"opt/app/a":       "a\n",
		"opt/app/b":       "b\n",
		"usr/bin/sutest":  "#!/bin/sh\n",
		"usr/bin/sgtest":  "#!/bin/sh\n",
		"var/lib/keep/me": "kept\n",
	}
	for name, content := range files {
		p := filepath.Join(img, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]uint32{"usr/bin/sutest": 0o4755, "usr/bin/sgtest": 0o2755, ".": 0o755} {
		if err := unix.Chmod(filepath.Join(img, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// roleLayer writes a role layer whose /sbin/init runs spec, plus files.
func roleLayer(t *testing.T, spec vm.RootfsSpec, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "role")
	init, err := vm.InitScript(spec)
	if err != nil {
		t.Fatal(err)
	}
	files["sbin/init"] = init
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if name == "sbin/init" {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type node struct {
	name string
	addr netip.Prefix
}

func boot(t *testing.T, n *vm.Net, a *vm.Artifacts, nd node, timeout time.Duration, onWait func(context.Context, string) error) *vm.Result {
	t.Helper()
	r := n.Boot(t, vm.Machine{
		Name:    nd.name,
		Kernel:  a.Vmlinux,
		Initrd:  a.Initrd,
		Timeout: timeout,
		Cmdline: vm.KernelArgs{
			NFSRoot:  n.Host().String() + ":/nodes/" + nd.name,
			Static:   nd.addr,
			Server:   n.Host(),
			Hostname: nd.name,
		}.String(),
		OnWait: onWait,
	})
	t.Logf("%s: %s", nd.name, r.Summary())
	for _, c := range r.Checks {
		if c.Status != "ok" {
			t.Logf("  %s %s: %s", c.Status, c.Name, c.Detail)
		}
	}
	return r
}

// Node 1 works on its root (copy-up, whiteouts, renames across layers,
// special files) while the controller restarts under it; node 2 on the
// same image sees none of it; node 1 boots again and finds all of it.
func TestKernelClientNodeRoots(t *testing.T) {
	n := vm.NewNet(t, "nfsroot")
	a := vm.PrepareT(t)
	img := image(t)
	c := newCluster()
	node1 := node{"node1", n.GuestAddr(0)}
	node2 := node{"node2", n.GuestAddr(1)}

	node1Checks := append(vm.StandardChecks(),
		vm.Check{Name: "root-export", Script: `grep -q "/nodes/node1 / nfs " /proc/mounts`},
		vm.Check{Name: "read-image", Script: `test "$(cat /etc/image-name)" = img1`},
		vm.Check{Name: "role-layer-init", Script: `test "$(cat /etc/role)" = node1-gen1`},
		vm.Check{Name: "setuid-visible", Script: `test -u /usr/bin/sutest && test "$(stat -c %a /usr/bin/sutest)" = 4755`},
		vm.Check{Name: "setgid-visible", Script: `test -g /usr/bin/sgtest && test "$(stat -c %a /usr/bin/sgtest)" = 2755`},
		vm.Check{Name: "sticky-tmp", Script: `test -k /tmp`},
		vm.Check{Name: "abs-symlink-exact", Script: `test "$(readlink /usr/bin/true)" = /bin/busybox`},
		vm.Check{Name: "append-image-file", Script: `echo k2 >> /etc/image-conf && test "$(cat /etc/image-conf)" = "key=1
k2"`},
		vm.Check{Name: "chmod-image-file", Script: `chmod 600 /etc/image-conf && test "$(stat -c %a /etc/image-conf)" = 600`},
		vm.Check{Name: "rename-image-file", Script: `mv /etc/image-name /etc/image-name.old && test "$(cat /etc/image-name.old)" = img1 && ! test -e /etc/image-name`},
		vm.Check{Name: "rename-image-dir", Script: `mv /opt/app /opt/app2 && test "$(cat /opt/app2/a)" = a && ! test -e /opt/app && test $(ls /opt/app2 | wc -l) = 2`},
		vm.Check{Name: "mkdir-in-image-dir", Script: `mkdir /etc/node.d && echo n1 > /etc/node.d/id && test "$(cat /etc/node.d/id)" = n1`},
		vm.Check{Name: "symlink-abs-create", Script: `ln -s /etc/node.d/id /etc/node-id && test "$(readlink /etc/node-id)" = /etc/node.d/id && test "$(cat /etc/node-id)" = n1`},
		vm.Check{Name: "mknod-block", Script: `mknod /tmp/blk b 7 3 && test -b /tmp/blk && test "$(stat -c %t:%T /tmp/blk)" = 7:3`},
		vm.Check{Name: "mknod-char", Script: `mknod /tmp/chr c 1 3 && test -c /tmp/chr && test "$(stat -c %t:%T /tmp/chr)" = 1:3`},
		// Issue 15: a node root a multi-user node can trust. uid 1000
		// ("u1000") acts through su; root is root on its own root.
		vm.Check{Name: "user-add", Script: `echo 'u1000:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd && echo 'u1000:x:1000:' >> /etc/group && su -s /bin/sh u1000 -c "test \$(id -u) = 1000"`},
		vm.Check{Name: "user-cannot-read-root-0600", Script: `echo secret > /tmp/r600 && chmod 600 /tmp/r600 && ! su -s /bin/sh u1000 -c "cat /tmp/r600" && test "$(cat /tmp/r600)" = secret`},
		vm.Check{Name: "user-cannot-append-root-0644", Script: `echo a > /tmp/r644 && chmod 644 /tmp/r644 && ! su -s /bin/sh u1000 -c "echo x >> /tmp/r644" && test "$(cat /tmp/r644)" = a`},
		vm.Check{Name: "user-cannot-create-in-root-dir", Script: `mkdir -p /tmp/rdir && chmod 755 /tmp/rdir && ! su -s /bin/sh u1000 -c "touch /tmp/rdir/x" && ! test -e /tmp/rdir/x`},
		vm.Check{Name: "user-cannot-delete-in-root-dir", Script: `touch /tmp/rdir/y && ! su -s /bin/sh u1000 -c "rm -f /tmp/rdir/y" && test -e /tmp/rdir/y`},
		vm.Check{Name: "user-cannot-chmod-root-file", Script: `! su -s /bin/sh u1000 -c "chmod 666 /tmp/r644" && test "$(stat -c %a /tmp/r644)" = 644`},
		vm.Check{Name: "user-cannot-chown-root-file", Script: `! su -s /bin/sh u1000 -c "chown 1000 /tmp/r644" && test "$(stat -c %u /tmp/r644)" = 0`},
		vm.Check{Name: "user-owns-what-it-creates", Script: `mkdir -p /tmp/pub && chmod 1777 /tmp/pub && su -s /bin/sh u1000 -c "touch /tmp/pub/f && mkdir /tmp/pub/d" && test "$(stat -c %u:%g /tmp/pub/f)" = 1000:1000 && test "$(stat -c %u:%g /tmp/pub/d)" = 1000:1000`},
		vm.Check{Name: "user-sticky-delete-refused", Script: `touch /tmp/pub/rootowned && ! su -s /bin/sh u1000 -c "rm -f /tmp/pub/rootowned" && test -e /tmp/pub/rootowned && su -s /bin/sh u1000 -c "rm /tmp/pub/f"`},
		vm.Check{Name: "chmod-setuid-setgid-sticky", Script: `touch /tmp/sb && chmod u+s,g+s /tmp/sb && test "$(stat -c %a /tmp/sb)" = 6644 && mkdir /tmp/st && chmod 1777 /tmp/st && test "$(stat -c %a /tmp/st)" = 1777 && chmod 755 /tmp/st && test "$(stat -c %a /tmp/st)" = 755`},
		vm.Check{Name: "hardlink-image-file", Script: `ln /etc/bin.count /tmp/bc && test "$(stat -c %h /etc/bin.count)" = 2 && test "$(cat /tmp/bc)" = "$(cat /etc/bin.count)" && rm /tmp/bc && test "$(stat -c %h /etc/bin.count)" = 1`},
		vm.Check{Name: "mkfifo-socketless-types", Script: `mkfifo /tmp/ff && test -p /tmp/ff && mknod /tmp/bb b 7 9 && test -b /tmp/bb`},
		vm.Check{Name: "touch-atime-apart", Script: `touch /tmp/at && touch -m -d "2001-01-01 00:00:00" /tmp/at && touch -a -d "2002-02-02 00:00:00" /tmp/at && test "$(stat -c %X /tmp/at)" != "$(stat -c %Y /tmp/at)"`},
		vm.Check{Name: "ctime-moves-on-chmod", Script: `touch -d "2001-01-01 00:00:00" /tmp/ct && c1=$(stat -c %Z /tmp/ct) && sleep 1 && chmod 600 /tmp/ct && test $(stat -c %Z /tmp/ct) -gt $c1`},
		vm.Check{Name: "rmdir-not-empty", Script: `mkdir -p /tmp/ne/x && ! rmdir /tmp/ne 2>/tmp/ne.err && grep -qi "not empty" /tmp/ne.err`},
		// Deeper than PATH_MAX below the root, named relative to the
		// working directory (pjdfstest's */03.t do it with 4,095 bytes).
		vm.Check{Name: "deeper-than-path-max", Script: deepPathScript("/tmp")},
		// FSSTAT from the disk (go-nfs said 2^62 bytes free).
		vm.Check{Name: "statfs-real", Script: `test $(( $(stat -f -c %b /) * $(stat -f -c %S /) )) -lt $(( 1 << 50 )) && test $(stat -f -c %a /) -gt 0`},
		// The same on a volume (root_squash, the default): root acts as
		// nobody (65534), uid 1000 as itself.
		vm.Check{Name: "volume-mount", Script: `mkdir -p /mnt/v && nfs_mount /volumes/shared /mnt/v "$PXE_NFS_OPTS,nosharecache" && test -d /mnt/v/pub`},
		vm.Check{Name: "volume-root-squashed", Script: `! touch /mnt/v/byroot 2>/dev/null && touch /mnt/v/pub/byroot && test "$(stat -c %u:%g /mnt/v/pub/byroot)" = 65534:65534`},
		vm.Check{Name: "volume-user-owns-what-it-creates", Script: `su -s /bin/sh u1000 -c "touch /mnt/v/pub/uf && mkdir /mnt/v/pub/ud" && test "$(stat -c %u:%g /mnt/v/pub/uf)" = 1000:1000 && test "$(stat -c %u:%g /mnt/v/pub/ud)" = 1000:1000`},
		vm.Check{Name: "volume-user-cannot-append-others", Script: `! su -s /bin/sh u1000 -c "echo x >> /mnt/v/pub/byroot" && test ! -s /mnt/v/pub/byroot`},
		vm.Check{Name: "volume-user-cannot-delete-others", Script: `test -k /mnt/v/pub && ! su -s /bin/sh u1000 -c "rm -f /mnt/v/pub/byroot" && test -e /mnt/v/pub/byroot`},
		vm.Check{Name: "volume-mkfifo-mknod", Script: `su -s /bin/sh u1000 -c "mkfifo /mnt/v/pub/ud/ff" && test -p /mnt/v/pub/ud/ff && ! mknod /mnt/v/pub/bdev b 7 9 2>/dev/null`},
		vm.Check{Name: "volume-hardlink", Script: `su -s /bin/sh u1000 -c "ln /mnt/v/pub/uf /mnt/v/pub/ud/uf2" && test "$(stat -c %h /mnt/v/pub/uf)" = 2`},
		vm.Check{Name: "volume-chmod-special-bits", Script: `su -s /bin/sh u1000 -c "chmod 1777 /mnt/v/pub/ud && chmod u+s /mnt/v/pub/uf" && test "$(stat -c %a /mnt/v/pub/ud)" = 1777 && test "$(stat -c %a /mnt/v/pub/uf)" = 4644`},
		vm.Check{Name: "volume-fresh-dirs-first-op", Script: `i=0; while [ $i -lt 40 ]; do su -s /bin/sh u1000 -c "mkdir /mnt/v/pub/fresh && cd /mnt/v/pub/fresh && touch f && ln f g && mkfifo p && cd / && rm -r /mnt/v/pub/fresh" || exit 1; i=$((i+1)); done`},
		vm.Check{Name: "volume-deeper-than-path-max", Script: deepPathScript("/mnt/v/pub")},
		vm.Check{Name: "volume-umount", Script: `umount /mnt/v`},
		vm.Check{Name: "delete-image-file", Script: `rm /etc/image-motd && ! test -e /etc/image-motd && ! ls /etc | grep -qx image-motd`},
		vm.Check{Name: "whiteout-after-remount", Script: `mkdir -p /mnt/again && nfs_mount /nodes/node1 /mnt/again "$PXE_NFS_OPTS,nosharecache" && ! test -e /mnt/again/etc/image-motd && test -e /mnt/again/etc/image-conf && test "$(cat /mnt/again/etc/node.d/id)" = n1 && umount /mnt/again`},
		vm.Check{Name: "other-node-refused", Script: `mkdir -p /mnt/other && ! nfs_mount /nodes/node2 /mnt/other "$PXE_NFS_OPTS,nosharecache"`},
		vm.Check{Name: "leave-marker", Script: `echo node1 > /node1-was-here && sync`},
	)
	// The controller restarts while a writer runs in the background and a
	// file is held open: nothing may see ESTALE, the writer carries on.
	restartScript := `mkdir /tmp/r
exec 3</var/lib/keep/me
( i=0; while [ $i -lt 1500 ]; do echo $i > /tmp/r/f$i || echo f$i >> /tmp/r.fail; i=$((i+1)); done; : > /tmp/r.done ) &
bg=$!
sleep 2
wait_host restart
wait $bg
sync; echo 3 > /proc/sys/vm/drop_caches
chk restart-writer-finished 'test -e /tmp/r.done && ! test -e /tmp/r.fail && test $(ls /tmp/r | wc -l) = 1500'
chk restart-open-fd 'read x <&3 && test "$x" = kept'
chk restart-ls-bin 'test $(ls /bin | wc -l) = $(cat /etc/bin.count)'
chk restart-exec '/bin/busybox true'
chk restart-read-moved 'test "$(cat /etc/image-name.old)" = img1 && test "$(cat /opt/app2/b)" = b'
chk restart-write 'echo after > /tmp/after && test "$(cat /tmp/after)" = after'`
	r1 := roleLayer(t, vm.RootfsSpec{Checks: node1Checks, Script: restartScript}, map[string]string{"etc/role": "node1-gen1\n"})
	c.add(nfsd.Node{Name: node1.name, ImageRoot: img, RoleLayer: r1, Volumes: []string{"shared"}}, node1.addr.Addr())
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.MkdirAll(filepath.Join(shared, "pub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(shared, "pub"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	c.volumes["shared"] = nfsd.Volume{Name: "shared", Path: shared}

	node2Checks := []vm.Check{
		{Name: "root-export", Script: `grep -q "/nodes/node2 / nfs " /proc/mounts`},
		{Name: "image-untouched", Script: `test "$(cat /etc/image-name)" = img1 && test "$(cat /etc/image-conf)" = key=1 && test "$(stat -c %a /etc/image-conf)" = 644`},
		{Name: "no-node1-files", Script: `! test -e /node1-was-here && ! test -e /etc/node.d && ! test -e /tmp/r && ! test -e /etc/image-name.old`},
		{Name: "no-node1-whiteouts", Script: `test -e /etc/image-motd && test -d /opt/app && ! test -e /opt/app2`},
		{Name: "own-write", Script: `echo node2 > /etc/image-name && test "$(cat /etc/image-name)" = node2`},
	}
	r2 := roleLayer(t, vm.RootfsSpec{Checks: node2Checks}, map[string]string{"etc/role": "node2\n"})
	c.add(nfsd.Node{Name: node2.name, ImageRoot: img, RoleLayer: r2}, node2.addr.Addr())

	ctl := startController(t, n, c)

	res := boot(t, n, a, node1, 6*time.Minute, func(ctx context.Context, name string) error {
		if name != "restart" {
			return fmt.Errorf("unexpected wait %q", name)
		}
		return ctl.restart(ctx)
	})
	vm.RequirePassed(t, res)
	if ctl.starts != 2 {
		t.Fatalf("controller started %d times, want 2", ctl.starts)
	}

	vm.RequirePassed(t, boot(t, n, a, node2, 3*time.Minute, nil))

	// Node 1 again, with a re-rendered role layer: its own layer persisted.
	again := []vm.Check{
		{Name: "own-layer-persisted", Script: `test "$(cat /node1-was-here)" = node1 && test "$(cat /etc/node.d/id)" = n1 && test "$(readlink /etc/node-id)" = /etc/node.d/id`},
		{Name: "whiteout-persisted", Script: `! test -e /etc/image-motd && ! test -e /etc/image-name && ! test -e /opt/app`},
		{Name: "copy-up-persisted", Script: `test "$(stat -c %a /etc/image-conf)" = 600 && test "$(tail -n1 /etc/image-conf)" = k2 && test $(ls /tmp/r | wc -l) = 1500`},
		{Name: "role-swapped", Script: `test "$(cat /etc/role)" = node1-gen2`},
		{Name: "node2-writes-invisible", Script: `! test -e /etc/image-name`},
	}
	c.add(nfsd.Node{Name: node1.name, ImageRoot: img, RoleLayer: roleLayer(t, vm.RootfsSpec{Checks: again}, map[string]string{"etc/role": "node1-gen2\n"})}, node1.addr.Addr())
	vm.RequirePassed(t, boot(t, n, a, node1, 3*time.Minute, nil))

	// Reset: refused while node 1 counts as mounted, then forced; the
	// image comes back.
	if err := ctl.server().Reset(node1.name, false); err == nil {
		t.Error("reset of a recently active node was not refused")
	}
	if err := ctl.server().Reset(node1.name, true); err != nil {
		t.Fatal(err)
	}
	fresh := []vm.Check{{Name: "reset-to-image", Script: `test "$(cat /etc/image-name)" = img1 && test -e /etc/image-motd && ! test -e /node1-was-here`}}
	c.add(nfsd.Node{Name: node1.name, ImageRoot: img, RoleLayer: roleLayer(t, vm.RootfsSpec{Checks: fresh}, map[string]string{})}, node1.addr.Addr())
	vm.RequirePassed(t, boot(t, n, a, node1, 3*time.Minute, nil))
}

// deepPathScript makes 20 nested directories of 250-byte names below dir
// (5 KB: more than PATH_MAX, on the client and on the server's host), one
// cd at a time, writes, reads and links a file at the bottom and removes
// it all bottom-up (busybox rm -r would build whole paths).
func deepPathScript(dir string) string {
	return `n=$(printf "%0250d" 0) && cd -P ` + dir + ` && for i in $(seq 1 20); do mkdir $n && cd -P $n || exit 1; done && echo deep > f && test "$(cat f)" = deep && ln f g && test "$(stat -c %h g)" = 2 && ls >/dev/null && rm f g && for i in $(seq 1 20); do cd -P .. && rmdir $n || exit 1; done && ! test -e ` + dir + `/$n`
}

// manyFiles is how many files TestKernelClientManyFiles creates: the issue's
// 60 000 (about 7 minutes under TCG on the project's machine), 4 000 with
// -short; PICTL_NFSROOT_FILES overrides both.
func manyFiles() int {
	if v, err := strconv.Atoi(os.Getenv("PICTL_NFSROOT_FILES")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 4000
	}
	return 60000
}

// TestKernelClientManyFiles: tens of thousands of new files (go-nfs's
// example server forgets handles after 1024 and the guest's init dies)
// with one file held open throughout, and a controller restart half-way.
func TestKernelClientManyFiles(t *testing.T) {
	n := vm.NewNet(t, "nfsmany")
	a := vm.PrepareT(t)
	img := image(t)
	c := newCluster()
	nd := node{"many", n.GuestAddr(0)}
	total := manyFiles()
	half := total / 2
	script := strings.NewReplacer("HALF", strconv.Itoa(half), "TOTAL", strconv.Itoa(total)).Replace(`mkdir /tmp/m
exec 3</var/lib/keep/me
st create-start
i=0; while [ $i -lt HALF ]; do : > /tmp/m/f$i || { echo "create f$i failed"; break; }; i=$((i+1)); done
st created-half
wait_host restart
while [ $i -lt TOTAL ]; do : > /tmp/m/f$i || { echo "create f$i failed"; break; }; i=$((i+1)); done
st created-all
sync; echo 3 > /proc/sys/vm/drop_caches
chk all-created 'test $i = TOTAL && test $(ls /tmp/m | wc -l) = TOTAL'
chk open-fd-after-churn 'read x <&3 && test "$x" = kept'
chk first-and-last 'test -e /tmp/m/f0 && test -e /tmp/m/f$((TOTAL-1))'
chk exec-after-churn '/bin/busybox true'
chk ls-bin-after-churn 'test $(ls /bin | wc -l) = $(cat /etc/bin.count)'`)
	role := roleLayer(t, vm.RootfsSpec{Script: script}, map[string]string{})
	c.add(nfsd.Node{Name: nd.name, ImageRoot: img, RoleLayer: role}, nd.addr.Addr())
	ctl := startController(t, n, c)
	res := boot(t, n, a, nd, 40*time.Minute, func(ctx context.Context, name string) error { return ctl.restart(ctx) })
	vm.RequirePassed(t, res)
	if s0, ok := res.Stage("create-start"); ok {
		if s1, ok := res.Stage("created-all"); ok {
			t.Logf("%d files in %.1f s of guest time", total, s1.Uptime-s0.Uptime)
		}
	}
}
