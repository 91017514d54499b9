package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pictl/pictl/internal/cluster"
)

// Update edits cluster.yaml: under an exclusive lock it re-reads the file,
// runs fn on it, validates the result and, if it is valid and differs,
// replaces the file atomically (temp file in the same directory, fsync,
// rename, fsync of the directory), keeping its mode and owner. It returns
// the new state. Nothing is written when fn fails or the result is invalid
// (the error is then fn's, or a cluster.ErrorList whose positions refer to
// the file as it would have been written).
//
// The lock is flock(2) on a sibling file (.cluster.yaml.lock): the file
// itself is replaced on every write, so a lock on it would protect nothing.
// It serialises writers in this and other processes alike.
func (s *Store) Update(fn func(d *cluster.Document) error) (*cluster.Cluster, error) {
	target := s.target()
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	data, err := s.read()
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(target)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", s.path, err)
	}
	doc, err := cluster.ParseDocument(s.path, data)
	if err != nil {
		return nil, err
	}
	if err := fn(doc); err != nil {
		return nil, err
	}
	out, err := doc.Bytes()
	if err != nil {
		return nil, err
	}
	cl, err := cluster.Load(s.path, out)
	if err != nil {
		return nil, err
	}
	if same(out, data) {
		return cl, nil
	}
	if err := s.writeAtomic(target, out, info.Mode().Perm(), info, false); err != nil {
		return nil, err
	}
	return cl, nil
}

// target is the file writes replace: the path with symlinks resolved, so a
// cluster.yaml linked from elsewhere (a git checkout) stays a link.
func (s *Store) target() string {
	if t, err := filepath.EvalSymlinks(s.path); err == nil {
		return t
	}
	return s.path
}

func lockPath(target string) string {
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".lock")
}

func tempPattern(target string) string { return "." + filepath.Base(target) + ".tmp-*" }

// lock takes the exclusive lock; the returned function releases it.
func (s *Store) lock() (func(), error) {
	path := lockPath(s.target())
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", s.path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// writeAtomic replaces (or, with noReplace, creates) target with data so
// that a reader sees the old file or the new one, never a mix, and a crash
// at any point leaves one of them on disk. The caller holds the lock.
func (s *Store) writeAtomic(target string, data []byte, mode fs.FileMode, old fs.FileInfo, noReplace bool) (err error) {
	dir := filepath.Dir(target)
	// Under the lock no other writer is between its temp file and its
	// rename, so any temp file left is from a writer that died: remove it.
	if stale, _ := filepath.Glob(filepath.Join(dir, tempPattern(target))); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	tmp, err := os.CreateTemp(dir, tempPattern(target))
	if err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	placed := false
	defer func() {
		if !placed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if old != nil {
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			// Keep owner and group; an unprivileged user may still keep the
			// group when they belong to it.
			if tmp.Chown(int(st.Uid), int(st.Gid)) != nil {
				tmp.Chown(-1, int(st.Gid))
			}
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", s.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if s.beforeRename != nil {
		s.beforeRename(tmp.Name())
	}
	if noReplace {
		err = renameNoReplace(tmp.Name(), target)
	} else {
		err = os.Rename(tmp.Name(), target)
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &ExistsError{Path: s.path}
		}
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	placed = true
	return syncDir(dir)
}

// renameNoReplace renames unless newpath exists; filesystems without
// RENAME_NOREPLACE get link+unlink, which is just as exclusive.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if err = os.Link(oldpath, newpath); err == nil {
			os.Remove(oldpath)
		}
		return err
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
