package images

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// importDir copies a directory tree (e.g. debootstrap's output) the way
// `cp -a` does, hard links and extended attributes included. It does not
// cross into other filesystems mounted below src (a chroot's /proc).
func importDir(ctx context.Context, src, dst string, workers int, prog *progressTracker) (*treeStats, error) {
	var rootSt unix.Stat_t
	if err := unix.Stat(src, &rootSt); err != nil {
		return nil, err
	}
	if rootSt.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrUnknownSource, src)
	}
	w, err := newTreeWriter(ctx, dst, workers)
	if err != nil {
		return nil, err
	}
	d := &dirImporter{src: src, dev: rootSt.Dev, w: w, seen: map[[2]uint64]string{}, prog: prog}
	if err := d.walk("."); err != nil {
		w.abort()
		return nil, err
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	return &treeStats{Files: w.files.Load(), Bytes: d.bytes}, nil
}

type dirImporter struct {
	src   string
	dev   uint64
	w     *treeWriter
	seen  map[[2]uint64]string
	bytes int64
	prog  *progressTracker
}

func (d *dirImporter) host(rel string) string {
	if rel == "." {
		return d.src
	}
	return d.src + "/" + rel
}

func (d *dirImporter) attrs(p string, st *unix.Stat_t) (attrs, error) {
	a := statAttrs(st)
	x, err := listXattrs(p)
	if err != nil {
		return attrs{}, err
	}
	a.Xattrs = x
	return a, nil
}

func (d *dirImporter) walk(rel string) error {
	p := d.host(rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	a, err := d.attrs(p, &st)
	if err != nil {
		return err
	}
	if err := d.w.Dir(rel, a); err != nil {
		return err
	}
	if st.Dev != d.dev {
		return nil // a mount point: keep it, empty
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("list %s: %w", p, err)
	}
	for _, name := range names {
		child := name
		if rel != "." {
			child = rel + "/" + name
		}
		if err := d.entry(child); err != nil {
			return err
		}
	}
	return nil
}

func (d *dirImporter) entry(rel string) error {
	p := d.host(rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return d.walk(rel)
	}
	key := [2]uint64{st.Dev, st.Ino}
	if first, ok := d.seen[key]; ok {
		return d.w.Hardlink(rel, first)
	}
	if st.Nlink > 1 {
		d.seen[key] = rel
	}
	a, err := d.attrs(p, &st)
	if err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		size := st.Size
		d.bytes += size
		return d.w.File(rel, a, func(f *os.File) error {
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			if err := copyRange(f, in, 0, 0, size); err != nil {
				return err
			}
			d.prog.add(size)
			return nil
		})
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return d.w.Symlink(rel, target, a)
	default:
		return d.w.Node(rel, a, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

// listXattrs reads every extended attribute of p (not following symlinks).
func listXattrs(p string) (map[string][]byte, error) {
	buf := make([]byte, 1024)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
		}
		if n == 0 {
			return nil, nil
		}
		out := map[string][]byte{}
		for _, name := range splitNul(buf[:n]) {
			v, err := lgetxattr(p, name)
			if err != nil {
				return nil, err
			}
			out[name] = v
		}
		return out, nil
	}
}

func lgetxattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		return buf[:n:n], nil
	}
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}
