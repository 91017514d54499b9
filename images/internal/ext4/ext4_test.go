package ext4

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// smallImage makes a tiny ext4 filesystem with a few kinds of entries.
func smallImage(tb testing.TB, features ...string) []byte {
	tb.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		tb.Skip("mkfs.ext4 not installed (Debian e2fsprogs)")
	}
	dir := tb.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "d/e"), 0o755)
	os.WriteFile(filepath.Join(src, "d/e/f"), bytes.Repeat([]byte("x"), 5000), 0o644)
	os.WriteFile(filepath.Join(src, "small"), []byte("hi"), 0o600)
	os.Symlink("d/e/f", filepath.Join(src, "link"))
	os.Link(filepath.Join(src, "small"), filepath.Join(src, "hard"))
	img := filepath.Join(dir, "fs.img")
	args := []string{"-q", "-F", "-b", "1024", "-N", "32", "-O", "^has_journal,^resize_inode", "-d", src}
	for _, f := range features {
		args = append(args, "-O", f)
	}
	if out, err := exec.Command("mkfs.ext4", append(args, img, "128K")...).CombinedOutput(); err != nil {
		tb.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// walkAll reads every entry, as the importer does.
func walkAll(fs *FS) (int, error) {
	n := 0
	seen := map[uint32]bool{}
	var walk func(ino uint32, depth int) error
	walk = func(num uint32, depth int) error {
		if depth > 64 || seen[num] {
			return errors.New("directory cycle")
		}
		seen[num] = true
		dir, err := fs.Inode(num)
		if err != nil {
			return err
		}
		ents, err := fs.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			n++
			ino, err := fs.Inode(e.Ino)
			if err != nil {
				return err
			}
			if _, err := fs.Xattrs(ino); err != nil {
				return err
			}
			switch {
			case ino.IsDir():
				if err := walk(e.Ino, depth+1); err != nil {
					return err
				}
			case ino.IsSymlink():
				if _, err := fs.ReadLink(ino); err != nil {
					return err
				}
			case ino.IsRegular():
				if _, err := fs.ReadAll(ino, 1<<20); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return n, walk(RootIno, 0)
}

func TestSmallImage(t *testing.T) {
	for _, feat := range [][]string{nil, {"inline_data"}, {"^extent,^64bit"}} {
		b := smallImage(t, feat...)
		fs, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		n, err := walkAll(fs)
		if err != nil {
			t.Fatalf("%v: %v", feat, err)
		}
		if n != 8 { // lost+found, d, d/e, d/e/f, small, hard, link + none
			t.Logf("%v: %d entries", feat, n)
		}
		if n < 7 {
			t.Errorf("%v: %d entries", feat, n)
		}
	}
}

// FuzzReader feeds damaged filesystems to the reader: it must return
// errors, never panic or loop. Seeds: testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	f.Add(smallImage(f))
	f.Add(smallImage(f, "inline_data"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		walkAll(fs)
	})
}
