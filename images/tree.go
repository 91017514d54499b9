package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// attrs is what every imported entry carries besides its content.
type attrs struct {
	Mode   uint32 // stat(2) mode: type and permission bits
	UID    int
	GID    int
	Atime  time.Time
	Mtime  time.Time
	Xattrs map[string][]byte
}

// treeWriter creates an imported tree under root. Every source (disk image,
// directory, tar) drives one. Paths are slash-separated and relative to root;
// each parent must be a directory this writer created, so an entry can never
// land outside root through a symlink the source planted earlier.
type treeWriter struct {
	root string

	mu        sync.Mutex
	dirs      map[string]bool
	dirAttrs  []dirAttr
	hardlinks [][2]string // new, existing

	files atomic.Int64
	bytes atomic.Int64

	// Regular files are filled by workers: the kernel copies the bytes,
	// and with 2+ workers creating inodes and copying overlap.
	g      *errgroup.Group
	ctx    context.Context
	jobs   chan fileJob
	closed bool
}

type dirAttr struct {
	rel string
	a   attrs
}

type fileJob struct {
	rel  string
	a    attrs
	fill func(*os.File) error
}

func newTreeWriter(ctx context.Context, root string, workers int) (*treeWriter, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	w := &treeWriter{root: root, dirs: map[string]bool{".": true}, g: g, ctx: gctx, jobs: make(chan fileJob, 64)}
	for range max(workers, 1) {
		g.Go(func() error {
			for j := range w.jobs {
				if err := w.writeFile(j); err != nil {
					// Drain so the producer never blocks on a dead pool.
					go func() {
						for range w.jobs {
						}
					}()
					return err
				}
			}
			return nil
		})
	}
	return w, nil
}

func (w *treeWriter) abs(rel string) string { return w.root + "/" + rel }

// checkParent makes sure rel's parent is a directory created here, making
// missing parents (tar archives may omit them) with default attributes.
func (w *treeWriter) checkParent(rel string) error {
	if rel == "" || rel == "." || strings.HasPrefix(rel, "/") || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("unsafe path %q in source", rel)
	}
	parent := path.Dir(rel)
	w.mu.Lock()
	ok := w.dirs[parent]
	w.mu.Unlock()
	if ok {
		return nil
	}
	if err := w.checkParent(parent); err != nil {
		return err
	}
	if fi, err := os.Lstat(w.abs(parent)); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s: parent is not a directory in the source", rel)
	}
	if err := os.Mkdir(w.abs(parent), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	w.mu.Lock()
	w.dirs[parent] = true
	w.mu.Unlock()
	return nil
}

func (w *treeWriter) err() error {
	if err := w.ctx.Err(); err != nil {
		if werr := context.Cause(w.ctx); werr != nil {
			return werr
		}
		return err
	}
	return nil
}

// Dir creates a directory; its attributes are applied by finish, after
// everything inside it is written (times and read-only modes would
// otherwise be disturbed). Writing "." updates the root's attributes.
func (w *treeWriter) Dir(rel string, a attrs) error {
	if err := w.err(); err != nil {
		return err
	}
	if rel != "." {
		if err := w.checkParent(rel); err != nil {
			return err
		}
		w.mu.Lock()
		exists := w.dirs[rel]
		w.mu.Unlock()
		if !exists {
			if err := os.Mkdir(w.abs(rel), 0o700); err != nil {
				return fmt.Errorf("create %s: %w", rel, err)
			}
		}
	}
	w.mu.Lock()
	w.dirs[rel] = true
	w.dirAttrs = append(w.dirAttrs, dirAttr{rel, a})
	w.mu.Unlock()
	w.files.Add(1)
	return nil
}

// File queues a regular file; fill writes its content into the new file.
func (w *treeWriter) File(rel string, a attrs, fill func(*os.File) error) error {
	if err := w.err(); err != nil {
		return err
	}
	if err := w.checkParent(rel); err != nil {
		return err
	}
	w.files.Add(1)
	select {
	case w.jobs <- fileJob{rel, a, fill}:
		return nil
	case <-w.ctx.Done():
		return w.err()
	}
}

func (w *treeWriter) writeFile(j fileJob) error {
	f, err := os.OpenFile(w.abs(j.rel), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", j.rel, err)
	}
	err = j.fill(f)
	if err == nil {
		err = w.setAttrsFd(int(f.Fd()), j.rel, j.a)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", j.rel, err)
	}
	return nil
}

// Symlink creates a symlink with the target exactly as given.
func (w *treeWriter) Symlink(rel, target string, a attrs) error {
	if err := w.err(); err != nil {
		return err
	}
	if err := w.checkParent(rel); err != nil {
		return err
	}
	p := w.abs(rel)
	if err := os.Symlink(target, p); err != nil {
		return fmt.Errorf("symlink %s: %w", rel, err)
	}
	if err := os.Lchown(p, a.UID, a.GID); err != nil {
		return fmt.Errorf("chown %s: %w", rel, err)
	}
	if err := setXattrs(p, rel, a.Xattrs, true); err != nil {
		return err
	}
	w.files.Add(1)
	return setTimes(p, rel, a)
}

// Node creates a device node, FIFO or socket.
func (w *treeWriter) Node(rel string, a attrs, major, minor uint32) error {
	if err := w.err(); err != nil {
		return err
	}
	if err := w.checkParent(rel); err != nil {
		return err
	}
	p := w.abs(rel)
	if err := unix.Mknod(p, a.Mode&(unix.S_IFMT)|0o600, int(unix.Mkdev(major, minor))); err != nil {
		return fmt.Errorf("mknod %s: %w", rel, err)
	}
	w.files.Add(1)
	return w.setAttrsPath(p, rel, a)
}

// Hardlink records a link to an already written regular file; links are
// made by finish, once the workers have created every file.
func (w *treeWriter) Hardlink(rel, existing string) error {
	if err := w.err(); err != nil {
		return err
	}
	if err := w.checkParent(rel); err != nil {
		return err
	}
	w.mu.Lock()
	w.hardlinks = append(w.hardlinks, [2]string{rel, existing})
	w.mu.Unlock()
	w.files.Add(1)
	return nil
}

// finish waits for the file workers, makes hard links and applies
// directory attributes deepest first.
func (w *treeWriter) finish() error {
	if !w.closed {
		close(w.jobs)
		w.closed = true
	}
	if err := w.g.Wait(); err != nil {
		return err
	}
	for _, l := range w.hardlinks {
		if err := os.Link(w.abs(l[1]), w.abs(l[0])); err != nil {
			return fmt.Errorf("hard link %s → %s: %w", l[0], l[1], err)
		}
	}
	slices.SortStableFunc(w.dirAttrs, func(a, b dirAttr) int {
		return strings.Count(b.rel, "/") - strings.Count(a.rel, "/")
	})
	for _, d := range w.dirAttrs {
		p := w.root
		if d.rel != "." {
			p = w.abs(d.rel)
		}
		if err := w.setAttrsPath(p, d.rel, d.a); err != nil {
			return err
		}
	}
	return nil
}

// abort stops the workers after a failure elsewhere.
func (w *treeWriter) abort() {
	if !w.closed {
		close(w.jobs)
		w.closed = true
	}
	_ = w.g.Wait()
}

// Order matters: chown clears setuid/setgid and security.capability, so
// owner first, then mode, then attributes, then times.
func (w *treeWriter) setAttrsFd(fd int, rel string, a attrs) error {
	if err := unix.Fchown(fd, a.UID, a.GID); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, a.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range a.Xattrs {
		if err := unix.Fsetxattr(fd, k, v, 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return setTimes(w.abs(rel), rel, a)
}

func (w *treeWriter) setAttrsPath(p, rel string, a attrs) error {
	if err := os.Lchown(p, a.UID, a.GID); err != nil {
		return fmt.Errorf("chown %s: %w", rel, err)
	}
	if err := unix.Chmod(p, a.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", rel, err)
	}
	if err := setXattrs(p, rel, a.Xattrs, false); err != nil {
		return err
	}
	return setTimes(p, rel, a)
}

func setXattrs(p, rel string, x map[string][]byte, symlink bool) error {
	for k, v := range x {
		var err error
		if symlink {
			err = unix.Lsetxattr(p, k, v, 0)
		} else {
			err = unix.Setxattr(p, k, v, 0)
		}
		if err != nil {
			return fmt.Errorf("set xattr %s on %s: %w", k, rel, err)
		}
	}
	return nil
}

func setTimes(p, rel string, a attrs) error {
	ts := []unix.Timespec{unix.NsecToTimespec(a.Atime.UnixNano()), unix.NsecToTimespec(a.Mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", rel, err)
	}
	return nil
}

// copyRange copies n bytes from src at soff to dst at doff inside the
// kernel, falling back to read/write where copy_file_range is refused.
func copyRange(dst, src *os.File, doff, soff, n int64) error {
	for n > 0 {
		so, do := soff, doff
		c, err := unix.CopyFileRange(int(src.Fd()), &so, int(dst.Fd()), &do, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return copyRangeSlow(dst, src, doff, soff, n)
			}
			return err
		}
		if c == 0 {
			return fmt.Errorf("source ends at byte %d: %w", soff, errTruncatedSource)
		}
		soff += int64(c)
		doff += int64(c)
		n -= int64(c)
	}
	return nil
}

var errTruncatedSource = errors.New("unexpected end of source")

func copyRangeSlow(dst, src *os.File, doff, soff, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		r, err := src.ReadAt(buf[:k], soff)
		if int64(r) < k {
			if err == nil {
				err = errTruncatedSource
			}
			return err
		}
		if _, err := dst.WriteAt(buf[:k], doff); err != nil {
			return err
		}
		soff += k
		doff += k
		n -= k
	}
	return nil
}

// statAttrs converts a host file's stat to attrs (directory sources).
func statAttrs(st *unix.Stat_t) attrs {
	return attrs{
		Mode:  st.Mode,
		UID:   int(st.Uid),
		GID:   int(st.Gid),
		Atime: time.Unix(st.Atim.Unix()),
		Mtime: time.Unix(st.Mtim.Unix()),
	}
}
