package roles

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteDir materialises a rendered tree and reads it back from the
// file system: contents, exact modes (whatever the umask), symlinks,
// whiteouts as 0:0 character devices, every mtime at the epoch.
func TestWriteDir(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	tr, err := builtins(t).Render(sampleNode(t, "web"), sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layer")
	if err := tr.WriteDir(dir); err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skip("making whiteouts needs CAP_MKNOD:", err)
		}
		t.Fatal(err)
	}
	seen := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if info.ModTime().Unix() != 0 {
			t.Errorf("%s: mtime %v, want the epoch", p, info.ModTime())
		}
		if d.IsDir() {
			if info.Mode().Perm() != dirMode {
				t.Errorf("%s: directory mode %v", p, info.Mode())
			}
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		f, ok := tr.File(filepath.ToSlash(rel))
		if !ok {
			t.Errorf("%s is not in the tree", rel)
			return nil
		}
		seen++
		switch {
		case f.IsSymlink():
			target, err := os.Readlink(p)
			if err != nil || target != string(f.Data) {
				t.Errorf("%s -> %q (%v), want %q", rel, target, err, f.Data)
			}
		case f.IsWhiteout():
			st := info.Sys().(*syscall.Stat_t)
			if info.Mode()&fs.ModeCharDevice == 0 || st.Rdev != 0 {
				t.Errorf("%s: mode %v rdev %d, want a 0:0 character device", rel, info.Mode(), st.Rdev)
			}
		default:
			data, err := os.ReadFile(p)
			if err != nil || string(data) != string(f.Data) {
				t.Errorf("%s: contents differ (%v)", rel, err)
			}
			if info.Mode() != f.Mode {
				t.Errorf("%s: mode %v, want %v", rel, info.Mode(), f.Mode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(tr.Files) {
		t.Errorf("read back %d files, the tree has %d", seen, len(tr.Files))
	}
	if err := tr.WriteDir(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("writing into a non-empty directory: %v", err)
	}
}

func TestTreeBuilderRefuses(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files []File
		want  string
	}{
		{"duplicate", []File{{Path: "etc/a", Mode: 0o644}, {Path: "etc/a", Mode: 0o644}}, "rendered twice"},
		{"file over dir", []File{{Path: "etc/a/b", Mode: 0o644}, {Path: "etc/a", Mode: 0o644}}, "both a file and the directory"},
		{"dir over file", []File{{Path: "etc/a", Mode: 0o644}, {Path: "etc/a/b", Mode: 0o644}}, "both a file and the directory"},
		{"absolute", []File{{Path: "/etc/a", Mode: 0o644}}, "starts with /"},
		{"dotdot", []File{{Path: "../etc", Mode: 0o644}}, "leaves the root"},
		{"unclean", []File{{Path: "etc//a", Mode: 0o644}}, "not clean"},
	} {
		b := newTreeBuilder()
		var err error
		for _, f := range tt.files {
			if err = b.add(f); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
