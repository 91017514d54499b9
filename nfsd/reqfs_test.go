package nfsd

import (
	"os"
	"reflect"
	"testing"
)

// reqFSFor is what FromHandle gives go-nfs for a request on the object at p.
func reqFSFor(t *testing.T, e *env, x *export, p string) *reqFS {
	t.Helper()
	h := &handler{s: e.srv}
	fh := h.ToHandle(x, pathElems(p))
	fs, elems, err := h.FromHandle(fh)
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Join(elems...); got != p {
		t.Fatalf("FromHandle path %q, want %q", got, p)
	}
	r, ok := fs.(*reqFS)
	if !ok {
		t.Fatalf("FromHandle gave %T", fs)
	}
	return r
}

// go-nfs refuses a RENAME whose two directories' file systems are not
// reflect.DeepEqual: FromHandle's reqFS must compare equal for two
// directories of one export, and unequal for two exports.
func TestRenameAcrossDirs(t *testing.T) {
	e := newEnv(t)
	img := newImage(t)
	e.nodes.set(Node{Name: "pi1", ImageRoot: img}, "")
	e.nodes.set(Node{Name: "pi2", ImageRoot: img}, "")
	x, y := e.export("/nodes/pi1"), e.export("/nodes/pi2")
	a, b := reqFSFor(t, e, x, "/etc"), reqFSFor(t, e, x, "/usr/bin")
	if !reflect.DeepEqual(billyFS(a), billyFS(b)) {
		t.Error("two directories of one export: file systems differ for go-nfs's RENAME")
	}
	if reflect.DeepEqual(billyFS(a), billyFS(reqFSFor(t, e, y, "/etc"))) {
		t.Error("two exports: file systems equal")
	}
}

func billyFS(r *reqFS) any { return r }

// The memo answers repeats within a request, never past a change made
// through the request or by another request.
func TestRequestMemo(t *testing.T) {
	e := newEnv(t)
	img := newImage(t)
	e.nodes.set(Node{Name: "pi1", ImageRoot: img}, "")
	x := e.export("/nodes/pi1")

	t.Run("repeat answered", func(t *testing.T) {
		r := reqFSFor(t, e, x, "/etc")
		if _, err := r.Lstat("/etc/passwd"); err != nil {
			t.Fatal(err)
		}
		x.mu.RLock()
		e1, _ := r.lookup(x, x.t, "/etc/passwd")
		e2, _ := r.lookup(x, x.t, "/etc/passwd")
		x.mu.RUnlock()
		if e1 != e2 {
			t.Error("second resolution of one path in a request not from the memo")
		}
	})
	t.Run("own change", func(t *testing.T) {
		r := reqFSFor(t, e, x, "/etc")
		if fi, err := r.Lstat("/etc/passwd"); err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("lstat: %v %v", fi, err)
		}
		if err := (&handler{s: e.srv}).Change(r).Chmod("/etc/passwd", 0o600); err != nil {
			t.Fatal(err)
		}
		if fi, err := r.Lstat("/etc/passwd"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("after chmod in the request: %v %v", fi, err)
		}
		f, err := r.OpenFile("/etc/passwd", os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("more\n"))
		f.Close()
		fi, err := r.Lstat("/etc/passwd")
		if err != nil || fi.Size() != int64(len(testImageContent(t, "etc/passwd"))+5) {
			t.Errorf("after write in the request: %v %v", fi, err)
		}
	})
	t.Run("other request's change", func(t *testing.T) {
		r := reqFSFor(t, e, x, "/etc")
		if _, err := r.Lstat("/etc/hostname"); err != nil {
			t.Fatal(err)
		}
		if err := x.Remove("/etc/hostname"); err != nil { // another request
			t.Fatal(err)
		}
		if _, err := r.Lstat("/etc/hostname"); !isNotExist(err) {
			t.Errorf("lstat after another request's remove: %v, want not found", err)
		}
		if _, err := r.Stat("/etc/hostname"); !isNotExist(err) {
			t.Errorf("stat after another request's remove: %v, want not found", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		writeFile(t, x, "/etc/motd", "mine\n", os.O_WRONLY|os.O_CREATE)
		r := reqFSFor(t, e, x, "/etc")
		if _, err := r.Lstat("/etc/motd"); err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Reset("pi1", true); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Lstat("/etc/motd"); !isNotExist(err) {
			t.Errorf("lstat after reset: %v, want not found", err)
		}
	})
}

func testImageContent(t *testing.T, p string) string {
	for _, f := range testImage {
		if f.path == p {
			return f.content
		}
	}
	t.Fatalf("no %s in testImage", p)
	return ""
}
