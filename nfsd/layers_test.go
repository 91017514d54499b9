package nfsd

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/willscott/go-nfs/file"
	"golang.org/x/sys/unix"
)

func nodeEnv(t *testing.T) (*env, string) {
	e := newEnv(t)
	img := newImage(t)
	e.nodes.set(Node{Name: "pi1", ImageRoot: img}, "127.0.0.1")
	e.nodes.set(Node{Name: "pi2", ImageRoot: img}, "127.0.0.2")
	return e, img
}

func sysOf(t *testing.T, fi os.FileInfo) *file.FileInfo {
	t.Helper()
	s, ok := fi.Sys().(*file.FileInfo)
	if !ok {
		t.Fatalf("%s: Sys() is %T", fi.Name(), fi.Sys())
	}
	return s
}

func names(t *testing.T, x *export, dir string) []string {
	t.Helper()
	list, err := x.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var out []string
	for _, fi := range list {
		out = append(out, fi.Name())
	}
	sort.Strings(out)
	return out
}

func lstatHost(t *testing.T, p string) (unix.Stat_t, bool) {
	t.Helper()
	var st unix.Stat_t
	err := unix.Lstat(p, &st)
	return st, err == nil
}

// TestLayerSemantics is the table of overlay rules, each case on a fresh
// node over the same image.
func TestLayerSemantics(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, x *export, img, upper string)
	}{
		{"read image file", func(t *testing.T, x *export, img, upper string) {
			if got := readAll(t, x, "/etc/hostname"); got != "image\n" {
				t.Fatalf("got %q", got)
			}
			if _, ok := lstatHost(t, upper+"/etc"); ok {
				t.Fatal("reading copied something up")
			}
		}},
		{"write copies up content mode owner times xattrs", func(t *testing.T, x *export, img, upper string) {
			before, _ := x.Lstat("/home/user/notes.txt")
			writeFile(t, x, "/home/user/notes.txt", "more\n", os.O_WRONLY|os.O_APPEND)
			if got := readAll(t, x, "/home/user/notes.txt"); got != "user notes\nmore\n" {
				t.Fatalf("content %q", got)
			}
			st, ok := lstatHost(t, upper+"/home/user/notes.txt")
			if !ok || st.Uid != 1000 || st.Gid != 1000 || st.Mode&0o7777 != 0o600 {
				t.Fatalf("copy-up attrs: %+v", st)
			}
			if b, _ := os.ReadFile(img + "/home/user/notes.txt"); string(b) != "user notes\n" {
				t.Fatal("image modified")
			}
			after, _ := x.Lstat("/home/user/notes.txt")
			if sysOf(t, before).Fileid != sysOf(t, after).Fileid {
				t.Fatal("copy-up changed the identity")
			}
			// parents copied up with their attributes
			pst, _ := lstatHost(t, upper+"/home/user")
			if pst.Uid != 0 || pst.Mode&unix.S_IFMT != unix.S_IFDIR {
				t.Fatalf("parent: %+v", pst)
			}
		}},
		{"chmod copies up and keeps times and setuid", func(t *testing.T, x *export, img, upper string) {
			fi, _ := x.Lstat("/etc/hostname")
			if err := x.Chmod("/etc/hostname", 0o600); err != nil {
				t.Fatal(err)
			}
			fi2, _ := x.Lstat("/etc/hostname")
			if fi2.Mode().Perm() != 0o600 || !fi2.ModTime().Equal(fi.ModTime()) {
				t.Fatalf("mode %v mtime %v (was %v)", fi2.Mode(), fi2.ModTime(), fi.ModTime())
			}
			if err := x.Chmod("/usr/bin/sudo", 0o750); err != nil {
				t.Fatal(err)
			}
			fi3, _ := x.Lstat("/usr/bin/sudo")
			if fi3.Mode()&0o7777 != 0o4750 {
				t.Fatalf("sudo mode %o", fi3.Mode()&0o7777)
			}
		}},
		{"xattrs copied up", func(t *testing.T, x *export, img, upper string) {
			buf := make([]byte, 16)
			if _, err := unix.Lgetxattr(img+"/usr/bin/vi", "user.pictl.test", buf); err != nil {
				t.Skip("no user xattrs here")
			}
			writeFile(t, x, "/usr/bin/vi", "patched", os.O_WRONLY|os.O_TRUNC)
			n, err := unix.Lgetxattr(upper+"/usr/bin/vi", "user.pictl.test", buf)
			if err != nil || string(buf[:n]) != "kept" {
				t.Fatalf("xattr after copy-up: %q %v", buf[:n], err)
			}
		}},
		{"delete leaves whiteout", func(t *testing.T, x *export, img, upper string) {
			if err := x.Remove("/etc/passwd"); err != nil {
				t.Fatal(err)
			}
			if _, err := x.Lstat("/etc/passwd"); !isNotExist(err) {
				t.Fatalf("still there: %v", err)
			}
			if slices.Contains(names(t, x, "/etc"), "passwd") {
				t.Fatal("listed after delete")
			}
			st, ok := lstatHost(t, upper+"/etc/passwd")
			if !ok || !isWhiteout(&st) {
				t.Fatal("no whiteout in the own layer")
			}
			if _, err := os.Stat(img + "/etc/passwd"); err != nil {
				t.Fatal("image lost the file")
			}
			// and a new file takes the name again, with a new identity
			writeFile(t, x, "/etc/passwd", "new\n", os.O_RDWR|os.O_CREATE)
			if got := readAll(t, x, "/etc/passwd"); got != "new\n" {
				t.Fatalf("recreated: %q", got)
			}
		}},
		{"delete own file leaves nothing", func(t *testing.T, x *export, img, upper string) {
			writeFile(t, x, "/tmp/x", "x", os.O_RDWR|os.O_CREATE)
			if err := x.Remove("/tmp/x"); err != nil {
				t.Fatal(err)
			}
			if _, ok := lstatHost(t, upper+"/tmp/x"); ok {
				t.Fatal("whiteout for a file no lower layer has")
			}
		}},
		{"opaque directory hides lower content", func(t *testing.T, x *export, img, upper string) {
			if err := x.Remove("/etc/ssh"); err == nil {
				t.Fatal("removed non-empty dir")
			}
			for _, n := range []string{"/etc/ssh/sshd_config", "/etc/ssh/moduli", "/etc/ssh"} {
				if err := x.Remove(n); err != nil {
					t.Fatal(err)
				}
			}
			if err := x.MkdirAll("/etc/ssh", 0o700); err != nil {
				t.Fatal(err)
			}
			if got := names(t, x, "/etc/ssh"); len(got) != 0 {
				t.Fatalf("recreated dir shows %v", got)
			}
			if !isOpaque(upper + "/etc/ssh") {
				t.Fatal("not marked opaque")
			}
			fi, _ := x.Lstat("/etc/ssh")
			if fi.Mode().Perm() != 0o700 {
				t.Fatalf("mode %v", fi.Mode())
			}
		}},
		{"rename image file", func(t *testing.T, x *export, img, upper string) {
			fi, _ := x.Lstat("/etc/hostname")
			if err := x.Rename("/etc/hostname", "/etc/hostname.old"); err != nil {
				t.Fatal(err)
			}
			if _, err := x.Lstat("/etc/hostname"); !isNotExist(err) {
				t.Fatalf("old name: %v", err)
			}
			fi2, err := x.Lstat("/etc/hostname.old")
			if err != nil || sysOf(t, fi2).Fileid != sysOf(t, fi).Fileid || !fi2.ModTime().Equal(fi.ModTime()) {
				t.Fatalf("new name: %v", err)
			}
			if readAll(t, x, "/etc/hostname.old") != "image\n" {
				t.Fatal("content")
			}
		}},
		{"rename image dir with subtree", func(t *testing.T, x *export, img, upper string) {
			before, _ := x.Lstat("/etc/ssh/moduli")
			writeFile(t, x, "/etc/ssh/local", "mine", os.O_RDWR|os.O_CREATE)
			if err := x.Remove("/etc/ssh/sshd_config"); err != nil {
				t.Fatal(err)
			}
			if err := x.Rename("/etc/ssh", "/srv-ssh"); err != nil {
				t.Fatal(err)
			}
			if got := names(t, x, "/srv-ssh"); !slices.Equal(got, []string{"local", "moduli"}) {
				t.Fatalf("moved dir lists %v", got)
			}
			after, err := x.Lstat("/srv-ssh/moduli")
			if err != nil || sysOf(t, after).Fileid != sysOf(t, before).Fileid {
				t.Fatal("child identity changed")
			}
			if _, err := x.Lstat("/etc/ssh"); !isNotExist(err) {
				t.Fatalf("old dir: %v", err)
			}
			// a new dir at the old name starts empty
			if err := x.MkdirAll("/etc/ssh", 0o755); err != nil {
				t.Fatal(err)
			}
			if got := names(t, x, "/etc/ssh"); len(got) != 0 {
				t.Fatalf("new dir lists %v", got)
			}
		}},
		{"rename over image file", func(t *testing.T, x *export, img, upper string) {
			writeFile(t, x, "/etc/hostname.new", "node\n", os.O_RDWR|os.O_CREATE)
			if err := x.Rename("/etc/hostname.new", "/etc/hostname"); err != nil {
				t.Fatal(err)
			}
			if readAll(t, x, "/etc/hostname") != "node\n" {
				t.Fatal("content")
			}
			if slices.Contains(names(t, x, "/etc"), "hostname.new") {
				t.Fatal("old name listed")
			}
		}},
		{"readdir merges without duplicates", func(t *testing.T, x *export, img, upper string) {
			writeFile(t, x, "/etc/hostname", "n\n", os.O_WRONLY|os.O_TRUNC) // copied up: in both layers
			writeFile(t, x, "/etc/motd", "hi\n", os.O_RDWR|os.O_CREATE)     // own layer only
			got := names(t, x, "/etc")
			want := []string{"hostname", "motd", "passwd", "shadow", "ssh", "systemd"}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v want %v", got, want)
			}
			fi, _ := x.Lstat("/etc")
			if sysOf(t, fi).Nlink != 1 {
				t.Fatalf("merged dir nlink %d", sysOf(t, fi).Nlink)
			}
		}},
		{"symlink targets verbatim", func(t *testing.T, x *export, img, upper string) {
			for p, want := range map[string]string{"/usr/bin/true": "/usr/bin/busybox", "/usr/bin/sh": "busybox", "/bin": "usr/bin"} {
				if got, err := x.Readlink(p); err != nil || got != want {
					t.Fatalf("%s: %q %v", p, got, err)
				}
			}
			if err := x.Symlink("/etc/../etc/passwd", "/tmp/abs"); err != nil {
				t.Fatal(err)
			}
			if got, _ := x.Readlink("/tmp/abs"); got != "/etc/../etc/passwd" {
				t.Fatalf("new symlink reads %q", got)
			}
			// Stat follows inside the export, also through /bin -> usr/bin
			fi, err := x.Stat("/bin/true")
			if err != nil || fi.Size() != int64(len("#!busybox\n")) {
				t.Fatalf("stat via symlinks: %v", err)
			}
			// removing a symlink removes the link, not its target
			if err := x.Remove("/tmp/abs"); err != nil {
				t.Fatal(err)
			}
			if _, err := x.Lstat("/etc/passwd"); err != nil {
				t.Fatal("symlink target removed")
			}
		}},
		{"special bits and devices visible", func(t *testing.T, x *export, img, upper string) {
			for p, want := range map[string]os.FileMode{"/usr/bin/sudo": 0o4755, "/usr/bin/wall": 0o2755, "/tmp": 0o1777} {
				fi, err := x.Lstat(p)
				if err != nil || fi.Mode()&0o7777 != want {
					t.Fatalf("%s: mode %o err %v", p, fi.Mode()&0o7777, err)
				}
			}
			fi, _ := x.Lstat("/dev/null")
			s := sysOf(t, fi)
			if fi.Mode()&os.ModeCharDevice == 0 || s.Major != 1 || s.Minor != 3 {
				t.Fatalf("/dev/null %v %d:%d", fi.Mode(), s.Major, s.Minor)
			}
			fi, _ = x.Lstat("/dev/sda")
			if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 || sysOf(t, fi).GID != 6 {
				t.Fatalf("/dev/sda %v", fi.Mode())
			}
			fi, _ = x.Lstat("/run/initctl")
			if fi.Mode()&os.ModeNamedPipe == 0 {
				t.Fatalf("fifo %v", fi.Mode())
			}
		}},
		{"special files creatable", func(t *testing.T, x *export, img, upper string) {
			if err := x.Mkfifo("/tmp/fifo", 0o640); err != nil {
				t.Fatal(err)
			}
			if err := x.Socket("/tmp/sock"); err != nil {
				t.Fatal(err)
			}
			if err := x.Mknod("/tmp/blk", 0o600, 7, 1); err != nil {
				t.Fatal(err)
			}
			checks := map[string]uint32{"/tmp/fifo": unix.S_IFIFO, "/tmp/sock": unix.S_IFSOCK, "/tmp/blk": unix.S_IFBLK}
			for p, typ := range checks {
				st, ok := lstatHost(t, upper+p)
				if !ok || st.Mode&unix.S_IFMT != typ {
					t.Fatalf("%s: %o", p, st.Mode)
				}
			}
			fi, _ := x.Lstat("/tmp/blk")
			if s := sysOf(t, fi); s.Major != 7 || s.Minor != 1 {
				t.Fatalf("blk %d:%d", s.Major, s.Minor)
			}
			if _, err := x.Open("/tmp/fifo"); err == nil {
				t.Fatal("opened a FIFO for READ")
			}
		}},
		{"hard links share identity", func(t *testing.T, x *export, img, upper string) {
			a, _ := x.Lstat("/usr/bin/vi")
			b, _ := x.Lstat("/usr/bin/view")
			if sysOf(t, a).Fileid != sysOf(t, b).Fileid || sysOf(t, a).Nlink != 2 {
				t.Fatalf("vi %d view %d nlink %d", sysOf(t, a).Fileid, sysOf(t, b).Fileid, sysOf(t, a).Nlink)
			}
			// own-layer hard link (what LINK would do if go-nfs decoded it)
			writeFile(t, x, "/tmp/a", "a", os.O_RDWR|os.O_CREATE)
			if err := x.Link("/tmp/a", "/tmp/b"); err != nil {
				t.Fatal(err)
			}
			fa, _ := x.Lstat("/tmp/a")
			fb, _ := x.Lstat("/tmp/b")
			if sysOf(t, fa).Fileid != sysOf(t, fb).Fileid || sysOf(t, fb).Nlink != 2 {
				t.Fatal("own-layer hard link")
			}
			// writing one copied-up name of an image hard link splits it
			writeFile(t, x, "/usr/bin/vi", "new", os.O_WRONLY|os.O_TRUNC)
			a, _ = x.Lstat("/usr/bin/vi")
			b, _ = x.Lstat("/usr/bin/view")
			if sysOf(t, a).Fileid == sysOf(t, b).Fileid || readAll(t, x, "/usr/bin/view") != "vi-binary" {
				t.Fatal("split hard link still shares identity or content")
			}
		}},
		{"create does not truncate", func(t *testing.T, x *export, img, upper string) {
			f, err := x.Create("/etc/hostname")
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if readAll(t, x, "/etc/hostname") != "image\n" {
				t.Fatal("Create truncated an existing file")
			}
		}},
		{"owner and setgid dir inheritance", func(t *testing.T, x *export, img, upper string) {
			if err := x.MkdirAll("/srv/share", 0o2775); err != nil {
				t.Fatal(err)
			}
			if err := x.Lchown("/srv/share", 0, 50); err != nil {
				t.Fatal(err)
			}
			if err := x.Chmod("/srv/share", os.ModeSetgid|0o775); err != nil {
				t.Fatal(err)
			}
			writeFile(t, x, "/srv/share/f", "x", os.O_RDWR|os.O_CREATE)
			fi, _ := x.Lstat("/srv/share/f")
			if sysOf(t, fi).GID != 50 {
				t.Fatalf("gid %d", sysOf(t, fi).GID)
			}
			if err := x.Lchown("/srv/share/f", 1000, 1000); err != nil {
				t.Fatal(err)
			}
			fi, _ = x.Lstat("/srv/share/f")
			if sysOf(t, fi).UID != 1000 {
				t.Fatal("chown")
			}
		}},
		{"root dir looks like the image root", func(t *testing.T, x *export, img, upper string) {
			var ist unix.Stat_t
			_ = unix.Stat(img, &ist)
			fi, _ := x.Lstat("/")
			if uint32(fi.Mode().Perm()) != ist.Mode&0o777 || sysOf(t, fi).Fileid != uint64(rootID) {
				t.Fatalf("root %v", fi.Mode())
			}
			if got := names(t, x, "/"); !slices.Contains(got, "etc") || !slices.Contains(got, "bin") {
				t.Fatalf("root lists %v", got)
			}
		}},
		{"bad names refused", func(t *testing.T, x *export, img, upper string) {
			for _, elems := range [][]string{{"etc", "../etc"}, {"tmp", "a/b"}, {"tmp", ".."}, {"tmp", "x\x00y"}} {
				p := x.Join(elems...)
				if _, err := x.Lstat(p); err == nil {
					t.Fatalf("%q resolved", elems)
				}
				if _, err := x.Create(p); err == nil {
					t.Fatalf("%q created", elems)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, img := nodeEnv(t)
			x := e.export("/nodes/pi1")
			tc.run(t, x, img, filepath.Join(e.state, "nfsd/nodes/pi1/root"))
		})
	}
}

func TestSecondNodeDoesNotSeeFirstNodesWrites(t *testing.T) {
	e, _ := nodeEnv(t)
	a, b := e.export("/nodes/pi1"), e.export("/nodes/pi2")
	writeFile(t, a, "/etc/hostname", "pi1\n", os.O_WRONLY|os.O_TRUNC)
	writeFile(t, a, "/root-only", "x", os.O_RDWR|os.O_CREATE)
	if err := a.Remove("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, b, "/etc/hostname"); got != "image\n" {
		t.Fatalf("pi2 reads %q", got)
	}
	if _, err := b.Lstat("/root-only"); !isNotExist(err) {
		t.Fatal("pi2 sees pi1's file")
	}
	if _, err := b.Lstat("/etc/passwd"); err != nil {
		t.Fatal("pi2 lost a file pi1 deleted")
	}
	if a.t.layers[len(a.t.layers)-1].index != b.t.layers[len(b.t.layers)-1].index {
		t.Fatal("two nodes on one image do not share the image index")
	}
}

func TestRoleLayer(t *testing.T) {
	e, img := nodeEnv(t)
	roles := t.TempDir()
	r1, r2 := filepath.Join(roles, "gen1"), filepath.Join(roles, "gen2")
	buildTree(t, r1, []imgFile{
		{path: "etc/hostname", mode: unix.S_IFREG | 0o644, content: "role-web\n"},
		{path: "etc/systemd/system/default.target", mode: unix.S_IFLNK, content: "/etc/systemd/system/pictl-web.target"},
		{path: "etc/systemd/system/pictl-web.target", mode: unix.S_IFREG | 0o644, content: "[Unit]\n"},
		{path: "etc/ssh/sshd_config", mode: unix.S_IFCHR}, // whiteout: the role removes it
	})
	buildTree(t, r2, []imgFile{
		{path: "etc/hostname", mode: unix.S_IFREG | 0o644, content: "role-db\n"},
		{path: "etc/systemd/system/pictl-web.target", mode: unix.S_IFREG | 0o644, content: "[Unit]\nDescription=v2\n"},
	})
	e.nodes.set(Node{Name: "pi1", ImageRoot: img, RoleLayer: r1}, "127.0.0.1")
	x := e.export("/nodes/pi1")
	h := &handler{s: e.srv}

	if got := readAll(t, x, "/etc/hostname"); got != "role-web\n" {
		t.Fatalf("role file: %q", got)
	}
	if _, err := x.Lstat("/etc/ssh/sshd_config"); !isNotExist(err) {
		t.Fatal("role whiteout ignored")
	}
	if got := names(t, x, "/etc/systemd/system"); !slices.Equal(got, []string{"default.target", "pictl-web.target"}) {
		t.Fatalf("merged: %v", got)
	}
	imgHost, _ := x.Lstat("/etc/hostname")
	hHost := h.ToHandle(x, []string{"etc", "hostname"})
	hTarget := h.ToHandle(x, []string{"etc", "systemd", "system", "pictl-web.target"})

	// The controller renders gen2 and points the node at it: the next
	// request sees the new layer as a whole.
	e.nodes.set(Node{Name: "pi1", ImageRoot: img, RoleLayer: r2}, "127.0.0.1")
	if _, _, err := h.FromHandle(hHost); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, x, "/etc/hostname"); got != "role-db\n" {
		t.Fatalf("after swap: %q", got)
	}
	if _, err := x.Lstat("/etc/ssh/sshd_config"); err != nil {
		t.Fatal("gen1's whiteout still applies")
	}
	after, _ := x.Lstat("/etc/hostname")
	if sysOf(t, after).Fileid != sysOf(t, imgHost).Fileid {
		t.Fatal("same-type role file changed identity on swap")
	}
	// role-only file: identity by path, stable across the swap and a restart
	if _, p, err := h.FromHandle(hTarget); err != nil || filepath.Join(p...) != "etc/systemd/system/pictl-web.target" {
		t.Fatalf("role file handle after swap: %v %v", p, err)
	}
	e.restart("")
	h2 := &handler{s: e.srv}
	if _, p, err := h2.FromHandle(hTarget); err != nil || filepath.Join(p...) != "etc/systemd/system/pictl-web.target" {
		t.Fatalf("role file handle after restart: %v %v", p, err)
	}
	// writing a role file copies it up into the own layer
	x2 := e.export("/nodes/pi1")
	writeFile(t, x2, "/etc/systemd/system/pictl-web.target", "mine\n", os.O_WRONLY|os.O_TRUNC)
	if _, p, err := h2.FromHandle(hTarget); err != nil || filepath.Join(p...) != "etc/systemd/system/pictl-web.target" {
		t.Fatalf("after copy-up: %v %v", p, err)
	}
}

func TestReset(t *testing.T) {
	e, _ := nodeEnv(t)
	x := e.export("/nodes/pi1")
	writeFile(t, x, "/etc/hostname", "pi1\n", os.O_WRONLY|os.O_TRUNC)
	writeFile(t, x, "/new", "x", os.O_RDWR|os.O_CREATE)
	h := &handler{s: e.srv}
	hNew := h.ToHandle(x, []string{"new"})
	hHost := h.ToHandle(x, []string{"etc", "hostname"})
	x.touch()
	if err := e.srv.Reset("pi1", false); err == nil {
		t.Fatal("reset of a node in use")
	}
	if err := e.srv.Reset("pi1", true); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, x, "/etc/hostname"); got != "image\n" {
		t.Fatalf("after reset: %q", got)
	}
	if _, _, err := h.FromHandle(hNew); err == nil {
		t.Fatal("handle of a discarded file still resolves")
	}
	if _, _, err := h.FromHandle(hHost); err != nil {
		t.Fatal("image file handle broken by reset")
	}
	// a node never seen by this server can be reset too
	if err := e.srv.Reset("pi2", false); err != nil {
		t.Fatal(err)
	}
}

// A client keeps a directory's cached entries until the directory's mtime
// changes. Swapping the role layer must change it for every directory the
// role layer takes part in — also one the node's own layer copied up
// (a guest that wrote into /etc/systemd/system) — and for the role's own
// files, whose mtimes are all the same fixed time; the same layer gives
// the same times again, also after a restart.
func TestRoleLayerSwapChangesMtimes(t *testing.T) {
	e, img := nodeEnv(t)
	roles := t.TempDir()
	r1, r2 := filepath.Join(roles, "a1"), filepath.Join(roles, "b2")
	epoch := time.Unix(0, 0)
	for _, r := range []string{r1, r2} {
		buildTree(t, r, []imgFile{
			{path: "etc/hostname", mode: unix.S_IFREG | 0o644, content: "pi1\n"},
			{path: "etc/systemd/system/pictl-role-" + filepath.Base(r) + ".target", mode: unix.S_IFREG | 0o644, content: "[Unit]\n"},
		})
		for _, p := range []string{"etc/hostname", "etc/systemd/system", "etc/systemd", "etc", "."} {
			os.Chtimes(filepath.Join(r, p), epoch, epoch) // as roles.Tree.WriteDir leaves them
		}
	}
	var x *export
	set := func(layer string) {
		e.nodes.set(Node{Name: "pi1", ImageRoot: img, RoleLayer: layer}, "127.0.0.1")
		if x != nil {
			if err := e.srv.refresh(x); err != nil { // as the next request does
				t.Fatal(err)
			}
		}
	}
	set(r1)
	x = e.export("/nodes/pi1")
	// The guest writes into /etc/systemd/system: its own layer now has
	// the directory, on top of the role layer's.
	writeFile(t, x, "/etc/systemd/system/local.service", "[Unit]\n", os.O_RDWR|os.O_CREATE)

	paths := []string{"/", "/etc", "/etc/systemd/system", "/etc/hostname"}
	mtimes := func() map[string]time.Time {
		t.Helper()
		out := map[string]time.Time{}
		for _, p := range paths {
			fi, err := x.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = fi.ModTime()
		}
		return out
	}
	first := mtimes()
	set(r2)
	second := mtimes()
	for _, p := range paths {
		if first[p].Equal(second[p]) {
			t.Errorf("%s: mtime %v unchanged by the role layer swap", p, first[p])
		}
		if first[p].Unix() != second[p].Unix() {
			t.Errorf("%s: seconds moved (%v → %v); only the nanoseconds may", p, first[p], second[p])
		}
	}
	if _, err := x.Lstat("/etc/systemd/system/pictl-role-b2.target"); err != nil {
		t.Fatal(err)
	}
	// Back to r1, and a restart: the first times again.
	set(r1)
	e.restart("")
	x = e.export("/nodes/pi1")
	if again := mtimes(); !maps.EqualFunc(again, first, time.Time.Equal) {
		t.Errorf("same layer, other times: %v, first %v", again, first)
	}
	// Nothing outside the role layer changes: the image's /usr.
	fi1, _ := x.Lstat("/usr")
	set(r2)
	if fi2, _ := x.Lstat("/usr"); fi1 == nil || fi2 == nil || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("/usr mtime changed with the role layer: %v → %v", fi1, fi2)
	}
}
