package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pictl/pictl/internal/cluster"
)

const baseYAML = `# test cluster
controller:
  address: 10.99.0.1/24  # the bridge

dhcp:
  range: 10.99.0.100-10.99.0.199

nodes:
  pi1: {mac: dc:a6:32:01:36:c1, role: web}
`

func newStore(t *testing.T, content string) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	if content != "" {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return New(path)
}

func TestConfigPath(t *testing.T) {
	t.Setenv(ConfigEnv, "")
	if got := ConfigPath(""); got != "/etc/pictl/cluster.yaml" {
		t.Errorf("default = %s", got)
	}
	t.Setenv(ConfigEnv, "/env/cluster.yaml")
	if got := ConfigPath(""); got != "/env/cluster.yaml" {
		t.Errorf("env = %s", got)
	}
	if got := ConfigPath("/flag/cluster.yaml"); got != "/flag/cluster.yaml" {
		t.Errorf("flag = %s", got)
	}
}

func TestLoadMissing(t *testing.T) {
	s := newStore(t, "")
	_, err := s.Load()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "pictl init") {
		t.Errorf("error does not name the file and pictl init: %v", err)
	}
	if _, err := s.Update(func(*cluster.Document) error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Update of a missing file: %v", err)
	}
}

func TestLoadInvalidNamesFile(t *testing.T) {
	s := newStore(t, "controller: {address: 10.99.0.1/24}\nnodes: {pi1: {mac: zz, ip: 10.99.0.9}}\n")
	_, err := s.Load()
	var list cluster.ErrorList
	if !errors.As(err, &list) || !strings.HasPrefix(err.Error(), s.Path()+":2:20: ") {
		t.Errorf("err = %v", err)
	}
}

func TestCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "pictl")
	s := New(filepath.Join(dir, "cluster.yaml"))
	data, err := cluster.InitTemplate(cluster.InitOptions{Address: "10.99.0.1/24", Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(data); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(s.Path())
	if err != nil || string(got) != string(data) {
		t.Fatalf("content after Create: %v", err)
	}
	if st, _ := os.Stat(s.Path()); st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v", st.Mode())
	}
	err = s.Create(data)
	var ex interface{ Exists() bool }
	if !errors.As(err, &ex) || !ex.Exists() || !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create: %v, want an Exists error", err)
	}
	if err := New(filepath.Join(dir, "other.yaml")).Create([]byte("nodes: [\n")); err == nil {
		t.Error("Create of invalid content: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "other.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("invalid content was written")
	}
	assertNoTemp(t, dir)
}

func TestUpdate(t *testing.T) {
	s := newStore(t, baseYAML)
	if err := os.Chmod(s.Path(), 0o640); err != nil {
		t.Fatal(err)
	}
	before := inode(t, s.Path())
	c, err := s.Update(func(d *cluster.Document) error { return d.Set("db", "nodes", "pi1", "role") })
	if err != nil {
		t.Fatal(err)
	}
	if c.Nodes["pi1"].Role != "db" {
		t.Errorf("returned state: role = %q", c.Nodes["pi1"].Role)
	}
	got, _ := os.ReadFile(s.Path())
	want := strings.Replace(strings.Replace(baseYAML, "role: web", "role: db", 1), "24  #", "24 #", 1)
	if string(got) != want {
		t.Errorf("file after Update:\n%s\nwant:\n%s", got, want)
	}
	st, _ := os.Stat(s.Path())
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v not kept", st.Mode())
	}
	if inode(t, s.Path()) == before {
		t.Error("file was rewritten in place, not replaced")
	}
	assertNoTemp(t, filepath.Dir(s.Path()))

	// No change: nothing is written.
	before = inode(t, s.Path())
	if _, err := s.Update(func(d *cluster.Document) error { return d.Set("db", "nodes", "pi1", "role") }); err != nil {
		t.Fatal(err)
	}
	if inode(t, s.Path()) != before {
		t.Error("an update that changes nothing rewrote the file")
	}
}

func TestUpdateRefusesInvalidResult(t *testing.T) {
	s := newStore(t, baseYAML)
	before, _ := os.ReadFile(s.Path())
	_, err := s.Update(func(d *cluster.Document) error { return d.Set("no-such-role", "nodes", "pi1", "role") })
	var list cluster.ErrorList
	if !errors.As(err, &list) || !strings.Contains(err.Error(), `role "no-such-role"`) {
		t.Fatalf("err = %v", err)
	}
	fnErr := errors.New("changed my mind")
	if _, err := s.Update(func(d *cluster.Document) error {
		d.Set("db", "nodes", "pi1", "role")
		return fnErr
	}); !errors.Is(err, fnErr) {
		t.Fatalf("err = %v, want fn's error", err)
	}
	after, _ := os.ReadFile(s.Path())
	if string(after) != string(before) {
		t.Error("file changed although the update failed")
	}
	assertNoTemp(t, filepath.Dir(s.Path()))
}

// A cluster.yaml that is a symlink (say into a git checkout) stays one.
func TestUpdateThroughSymlink(t *testing.T) {
	real := newStore(t, baseYAML)
	link := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.Symlink(real.Path(), link); err != nil {
		t.Fatal(err)
	}
	s := New(link)
	if _, err := s.Update(func(d *cluster.Document) error { return d.Set("lb", "nodes", "pi1", "role") }); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("link replaced by a file: %v %v", fi.Mode(), err)
	}
	c, err := real.Load()
	if err != nil || c.Nodes["pi1"].Role != "lb" {
		t.Fatalf("target not updated: %v", err)
	}
}

func TestDocument(t *testing.T) {
	s := newStore(t, baseYAML)
	d, err := s.Document()
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := d.Get("nodes", "pi1", "role"); !ok || n.Value != "web" {
		t.Errorf("Get = %v %v", n, ok)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// assertNoTemp fails if a temp file of the atomic write is left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}
}
