package nfsd

import (
	"os"
	"time"

	billy "github.com/go-git/go-billy/v5"
)

// reqFS is the file system FromHandle hands go-nfs: the export, plus a
// memo of the paths resolved while go-nfs answers this one request.
//
// go-nfs resolves the same paths several times per request — a LOOKUP
// lstats the directory, the name, asks ToHandle for the name (which
// resolves it again), then lstats name and directory once more for the
// reply's attributes — and each resolution costs one or more lstat
// syscalls through the host path of every layer. Within a request the
// memo answers the repeats.
//
// Why this changes nothing a client can see: a request is answered by one
// goroutine with a reqFS of its own, made by FromHandle and dropped with
// the reply, so nothing resolved is ever reused by another request or
// later. A reply built from one resolution per path is a reply for the
// state at the moment of that resolution, which lies inside the request's
// processing — as valid as the mix of moments it was built from before
// (requests in flight at the same time have no order). Two rules keep the
// memo from answering for a state the request itself, or nfsd, has since
// changed:
//   - every changing call made through the reqFS (open for writing,
//     create, remove, rename, mkdir, symlink, chmod/chown/times, mknod,
//     link) turns the memo off for the rest of the request, so the
//     post-operation attributes go-nfs sends are read afresh;
//   - a memo slot only answers while the export's cache generation is the
//     one it was resolved at: namespace changes by other requests
//     (copy-up, whiteouts, renames), a role layer or image swap and
//     Server.Reset all bump it (exportCache.invalidate), so host paths
//     taken from the memo are never those of a replaced tree.
//
// Only successful resolutions are kept (a name go-nfs looks up before
// creating it is never answered "absent" from the memo).
//
// go-nfs's RENAME compares the two directories' file systems with
// reflect.DeepEqual: two reqFS of one export are equal as long as their
// memos are still empty, which they are at that point (go-nfs calls
// FromHandle for both directories, compares, and only then resolves
// paths) — so FromHandle must not fill the memo. TestRenameAcrossDirs
// covers it.
type reqFS struct {
	*export
	memo reqMemo
}

type reqMemo struct {
	off  bool
	next int
	slot [4]memoSlot
}

type memoSlot struct {
	gen  uint64
	path string
	e    *entry
}

// exportOf returns the export behind a file system go-nfs hands back.
func exportOf(f billy.Filesystem) (*export, *reqFS) {
	switch v := f.(type) {
	case *export:
		return v, nil
	case *reqFS:
		if v == nil {
			return nil, nil
		}
		return v.export, v
	}
	return nil, nil
}

// lookup is export.lookup through the memo. Callers hold x.mu (read), so
// no namespace change runs while it resolves. A nil r is the plain export.
func (r *reqFS) lookup(x *export, t *tree, p string) (*entry, error) {
	if r == nil || r.memo.off {
		return x.lookup(t, p)
	}
	gen := x.cache.generation()
	for i := range r.memo.slot {
		s := &r.memo.slot[i]
		if s.e != nil && s.gen == gen && s.path == p {
			return s.e, nil
		}
	}
	e, err := x.lookup(t, p)
	if err == nil {
		r.memo.slot[r.memo.next] = memoSlot{gen: gen, path: p, e: e}
		r.memo.next = (r.memo.next + 1) % len(r.memo.slot)
	}
	return e, err
}

// changing turns the memo off for the rest of the request.
func (r *reqFS) changing() { r.memo = reqMemo{off: true} }

func (r *reqFS) Lstat(name string) (os.FileInfo, error) {
	p, err := cleanPath(name)
	if err != nil {
		return nil, pathErr("lstat", name, err)
	}
	x := r.export
	t := x.rlock()
	defer x.mu.RUnlock()
	e, err := r.lookup(x, t, p)
	if err != nil {
		return nil, err
	}
	return x.info(t, e)
}

// Stat answers from the memo when the path holds no symlink to follow
// (export.follow's own first step); anything else is export.Stat.
func (r *reqFS) Stat(name string) (os.FileInfo, error) {
	if p, err := cleanPath(name); err == nil {
		x := r.export
		t := x.rlock()
		if e, err := r.lookup(x, t, p); err == nil && !e.isSymlink() {
			fi, err := x.info(t, e)
			x.mu.RUnlock()
			return fi, err
		}
		x.mu.RUnlock()
	}
	return r.export.Stat(name)
}

// Changing calls: the memo goes off first.

func (r *reqFS) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_TRUNC|os.O_APPEND|os.O_CREATE) != 0 {
		r.changing()
	}
	return r.export.OpenFile(name, flag, perm)
}

func (r *reqFS) Create(name string) (billy.File, error) {
	r.changing()
	return r.export.Create(name)
}

func (r *reqFS) Rename(oldpath, newpath string) error {
	r.changing()
	return r.export.Rename(oldpath, newpath)
}

func (r *reqFS) Remove(name string) error {
	r.changing()
	return r.export.Remove(name)
}

func (r *reqFS) MkdirAll(name string, perm os.FileMode) error {
	r.changing()
	return r.export.MkdirAll(name, perm)
}

func (r *reqFS) Symlink(target, link string) error {
	r.changing()
	return r.export.Symlink(target, link)
}

func (r *reqFS) TempFile(dir, prefix string) (billy.File, error) {
	r.changing()
	return r.export.TempFile(dir, prefix)
}

func (r *reqFS) Chmod(name string, mode os.FileMode) error {
	r.changing()
	return r.export.Chmod(name, mode)
}

func (r *reqFS) Lchown(name string, uid, gid int) error {
	r.changing()
	return r.export.Lchown(name, uid, gid)
}

func (r *reqFS) Chown(name string, uid, gid int) error {
	r.changing()
	return r.export.Chown(name, uid, gid)
}

func (r *reqFS) Chtimes(name string, atime, mtime time.Time) error {
	r.changing()
	return r.export.Chtimes(name, atime, mtime)
}

func (r *reqFS) Mknod(name string, mode uint32, major, minor uint32) error {
	r.changing()
	return r.export.Mknod(name, mode, major, minor)
}

func (r *reqFS) Mkfifo(name string, mode uint32) error {
	r.changing()
	return r.export.Mkfifo(name, mode)
}

func (r *reqFS) Socket(name string) error {
	r.changing()
	return r.export.Socket(name)
}

func (r *reqFS) Link(path, link string) error {
	r.changing()
	return r.export.Link(path, link)
}
