package nfsd

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	nfsc "github.com/willscott/go-nfs-client/nfs"
)

// nfsEnv: two nodes on one image; the test client (127.0.0.1) is pi1,
// which may use volume www (read-write) and docs (read-only).
func nfsEnv(t testing.TB) (*env, string, string) {
	e := newEnv(t)
	img := newImage(t)
	www, docs, secret := t.TempDir(), t.TempDir(), t.TempDir()
	buildTree(t, www, []imgFile{{path: "html/index.html", mode: 0o644, content: "<h1>hi</h1>\n"}})
	buildTree(t, docs, []imgFile{{path: "readme", mode: 0o644, content: "docs\n"}})
	e.nodes.set(Node{Name: "pi1", ImageRoot: img, Volumes: []string{"www", "docs"}}, "127.0.0.1")
	e.nodes.set(Node{Name: "pi2", ImageRoot: img}, "127.0.0.2")
	// www: no_root_squash, so the tests' root client writes as root.
	e.nodes.setVolume(Volume{Name: "www", Path: www, Squash: SquashNone})
	e.nodes.setVolume(Volume{Name: "docs", Path: docs, ReadOnly: true})
	e.nodes.setVolume(Volume{Name: "secret", Path: secret})
	addr := e.serve()
	return e, addr, img
}

func TestMountAccessControl(t *testing.T) {
	e, addr, _ := nfsEnv(t)
	cases := []struct {
		path string
		ok   bool
	}{
		{"/nodes/pi1", true},
		{"/nodes/pi1/", true},
		{"/nodes/pi2", false}, // another node's root
		{"/nodes/nope", false},
		{"/volumes/www", true},
		{"/volumes/docs", true},
		{"/volumes/secret", false}, // exists, not allowed for pi1
		{"/volumes/nope", false},
		{"/", false},
		{"/etc", false},
		{"/nodes/../nodes/pi2", false},
	}
	for _, tc := range cases {
		_, err := mount(t, addr, tc.path)
		if tc.ok && err != nil {
			t.Errorf("mount %s: %v", tc.path, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "MNT3ERR_ACCES")) {
			t.Errorf("mount %s: want MNT3ERR_ACCES, got %v", tc.path, err)
		}
	}
	// An address that belongs to no node gets nothing.
	e.nodes.mu.Lock()
	e.nodes.addrs = nil
	e.nodes.mu.Unlock()
	if _, err := mount(t, addr, "/nodes/pi1"); err == nil {
		t.Error("mount from an unknown address accepted")
	}
}

func TestNFSReadWriteAndVolumes(t *testing.T) {
	_, addr, img := nfsEnv(t)
	v := mustMount(t, addr, "/nodes/pi1")
	if got := readTarget(t, v, "/etc/hostname"); got != "image\n" {
		t.Fatalf("read %q", got)
	}
	writeTarget(t, v, "/tmp/hello", "hello from pi1\n")
	if got := readTarget(t, v, "/tmp/hello"); got != "hello from pi1\n" {
		t.Fatalf("reread %q", got)
	}
	if _, err := v.Mkdir("/srv", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := v.Rename("/etc/hostname", "/srv/hostname"); err != nil {
		t.Fatal(err)
	}
	if err := v.Symlink("/srv/hostname", "/etc/hostname"); err != nil {
		t.Fatal(err)
	}
	if err := v.Remove("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
	ents, err := v.ReadDirPlus("/etc")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	seen := map[string]bool{}
	for _, e := range ents {
		if seen[e.FileName] {
			t.Errorf("%s listed twice", e.FileName)
		}
		seen[e.FileName] = true
		if e.FileName != "." && e.FileName != ".." {
			got = append(got, e.FileName)
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "hostname shadow ssh systemd" {
		t.Fatalf("listing %v", got)
	}
	// setuid visible on the wire
	fi, _, err := v.Lookup("/usr/bin/sudo")
	if err != nil || fi.(*nfsc.Fattr).FileMode&0o7777 != 0o4755 {
		t.Fatalf("sudo mode %o %v", fi.(*nfsc.Fattr).FileMode, err)
	}
	if b, _ := os.ReadFile(filepath.Join(img, "etc/hostname")); string(b) != "image\n" {
		t.Fatal("image changed")
	}

	w := mustMount(t, addr, "/volumes/www")
	writeTarget(t, w, "/html/new.html", "new\n")
	if got := readTarget(t, w, "/html/index.html"); got != "<h1>hi</h1>\n" {
		t.Fatalf("volume read %q", got)
	}
	d := mustMount(t, addr, "/volumes/docs")
	if got := readTarget(t, d, "/readme"); got != "docs\n" {
		t.Fatalf("ro volume read %q", got)
	}
	if _, err := d.Create("/x", 0o644); nfsStatus(err) != nfsc.NFS3ErrROFS {
		t.Fatalf("write to read-only volume: %v", err)
	}
}

// TestHandlesSurviveRestartAndRename: the handles a client holds keep
// naming the same objects after renames (in and across layers) and after
// the server is replaced by a new process on the same state.
func TestHandlesSurviveRestartAndRename(t *testing.T) {
	e, addr, _ := nfsEnv(t)
	v := mustMount(t, addr, "/nodes/pi1")
	c := dialRPC(t, addr)
	root := rootFH(t, v)

	writeTarget(t, v, "/tmp/mine", "mine\n")
	if _, err := v.Mkdir("/tmp/d", 0o755); err != nil {
		t.Fatal(err)
	}
	writeTarget(t, v, "/tmp/d/inner", "inner\n")
	handles := map[string][]byte{}
	for _, p := range []string{"/etc/hostname", "/etc/ssh", "/etc/ssh/moduli", "/tmp/mine", "/tmp/d", "/tmp/d/inner", "/usr/bin/sudo"} {
		_, fh, err := v.Lookup(p)
		if err != nil {
			t.Fatal(p, err)
		}
		handles[p] = fh
	}
	ids := map[string]uint64{}
	for p, fh := range handles {
		a, st := getattr(t, c, fh)
		if st != nfsc.NFS3Ok {
			t.Fatalf("%s: status %d", p, st)
		}
		ids[p] = a.Fileid
	}
	// renames: lower file, lower dir with subtree, own dir, own file
	for _, r := range [][2]string{{"/etc/hostname", "/etc/hostname.bak"}, {"/etc/ssh", "/ssh"}, {"/tmp/d", "/d2"}, {"/tmp/mine", "/d2/mine"}} {
		if err := v.Rename(r[0], r[1]); err != nil {
			t.Fatalf("rename %v: %v", r, err)
		}
	}
	check := func(stage string) {
		t.Helper()
		for p, fh := range handles {
			a, st := getattr(t, c, fh)
			if st != nfsc.NFS3Ok || a.Fileid != ids[p] {
				t.Errorf("%s: handle of %s: status %d fileid %x want %x", stage, p, st, a.Fileid, ids[p])
			}
		}
		for p, want := range map[string]string{"/etc/hostname": "image\n", "/tmp/mine": "mine\n", "/tmp/d/inner": "inner\n"} {
			if got, st := readFH(t, c, handles[p]); st != nfsc.NFS3Ok || got != want {
				t.Errorf("%s: read via old handle of %s: %q status %d", stage, p, got, st)
			}
		}
		if fh, st := lookupFH(t, c, handles["/tmp/d"], "inner"); st != nfsc.NFS3Ok || !bytes.Equal(fh, handles["/tmp/d/inner"]) {
			t.Errorf("%s: lookup in moved dir: status %d, same handle %v", stage, st, bytes.Equal(fh, handles["/tmp/d/inner"]))
		}
		if fh, st := lookupFH(t, c, root, "ssh"); st != nfsc.NFS3Ok || !bytes.Equal(fh, handles["/etc/ssh"]) {
			t.Errorf("%s: moved lower dir has a new handle (status %d)", stage, st)
		}
	}
	check("after renames")

	// Controller restart: a new server process, same state dir and db.
	e.restart(addr)
	eventually(t, func() bool { _, st := getattr(t, c, root); return st == nfsc.NFS3Ok })
	check("after restart")

	// Writes through an old handle after the restart (copy-up of a renamed
	// image file keeps working too).
	if _, err := v.SetAttr(handles["/etc/hostname"], nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o600}}); err != nil {
		t.Fatal(err)
	}
	if a, _ := getattr(t, c, handles["/etc/hostname"]); a.FileMode&0o777 != 0o600 {
		t.Fatalf("mode %o", a.FileMode)
	}

	// Removed objects are stale, not something else.
	if err := v.Remove("/d2/inner"); err != nil {
		t.Fatal(err)
	}
	writeTarget(t, v, "/d2/inner", "different file\n")
	if _, st := getattr(t, c, handles["/tmp/d/inner"]); st != nfsc.NFS3ErrStale {
		t.Fatalf("handle of a removed file: status %d, want STALE", st)
	}
}

func TestForgedHandlesRejected(t *testing.T) {
	e, addr, _ := nfsEnv(t)
	v := mustMount(t, addr, "/nodes/pi1")
	c := dialRPC(t, addr)
	_, fh, err := v.Lookup("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	if _, st := getattr(t, c, fh); st != nfsc.NFS3Ok {
		t.Fatal("own handle refused")
	}
	pi2 := e.export("/nodes/pi2")
	forged := [][]byte{
		nil,
		{},
		[]byte("not a handle"),
		fh[:len(fh)-1],
		append(append([]byte{}, fh...), 0),
		bytes.Repeat([]byte{0xff}, 64),
	}
	// flip every bit once
	for i := 0; i < len(fh)*8; i++ {
		f := append([]byte{}, fh...)
		f[i/8] ^= 1 << (i % 8)
		forged = append(forged, f)
	}
	// the same file in pi2's export, made with the wrong key
	wrongKey := newHandleCodec(bytes.Repeat([]byte{7}, handleKeyLen))
	_, id, _ := e.srv.codec.decode(fh)
	forged = append(forged, wrongKey.encode(pi2.number, id), wrongKey.encode(pi2.number, rootID))
	for i, f := range forged {
		_, st := getattr(t, c, f)
		if len(f) == 0 && st != nfsc.NFS3Ok {
			continue // go-nfs refuses an empty handle itself (NFS3ERR_INVAL)
		}
		if st != nfsc.NFS3ErrStale {
			t.Errorf("forged handle %d (%x): status %d, want STALE", i, f, st)
		}
	}
}

// TestManyFilesNoStale: far more files than go-nfs's example handle cache
// holds; every handle stays valid (no eviction).
func TestManyFilesNoStale(t *testing.T) {
	_, addr, _ := nfsEnv(t)
	v := mustMount(t, addr, "/nodes/pi1")
	c := dialRPC(t, addr)
	if _, err := v.Mkdir("/many", 0o755); err != nil {
		t.Fatal(err)
	}
	n := 3000
	if testing.Short() {
		n = 500
	}
	var fhs [][]byte
	for i := 0; i < n; i++ {
		fh, err := v.Create("/many/f"+strings.Repeat("x", i%7)+strconv.Itoa(i), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fhs = append(fhs, fh)
	}
	for i, fh := range fhs {
		if _, st := getattr(t, c, fh); st != nfsc.NFS3Ok {
			t.Fatalf("file %d: status %d", i, st)
		}
	}
	ents, err := v.ReadDirPlus("/many")
	if err != nil || len(ents) != n { // the client drops . and ..
		t.Fatalf("listing: %d entries, %v", len(ents), err)
	}
}
