package nfsd

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A client names files relative to handles, so the merged paths nfsd
// builds have no length limit of their own (pjdfstest creates 4,095-byte
// paths below its working directory), while the kernel refuses a path
// argument of PATH_MAX bytes or more (ENAMETOOLONG). Every host path goes
// through the wrappers below: a short one (all but these) is passed as it
// is; a long one is reached through directories opened on the way
// (O_PATH), the rest named behind /proc/self/fd/N — knfsd and ganesha
// never build whole paths at all.

// shortHost names p in fewer than PATH_MAX bytes; release closes what it
// opened for that.
func shortHost(p string) (string, func(), error) {
	fd := -1
	release := func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	rest := p
	for {
		prefix := ""
		if fd >= 0 {
			prefix = "/proc/self/fd/" + strconv.Itoa(fd) + "/"
		}
		if len(prefix)+len(rest) < unix.PathMax {
			return prefix + rest, release, nil
		}
		// Cut at a slash well inside the limit (a name is at most 255
		// bytes, so there is one).
		i := strings.LastIndexByte(rest[:unix.PathMax-64], '/')
		if i <= 0 {
			release()
			return "", nil, unix.ENAMETOOLONG
		}
		dir := fd
		if dir < 0 {
			dir = unix.AT_FDCWD
		}
		next, err := unix.Openat(dir, rest[:i], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		release()
		if err != nil {
			return "", nil, err
		}
		fd, rest = next, rest[i+1:]
	}
}

func noRelease() {}

// hostName is shortHost for a path that is usually short: no work, no
// allocation then.
func hostName(p string) (string, func(), error) {
	if len(p) < unix.PathMax {
		return p, noRelease, nil
	}
	return shortHost(p)
}

// atHost runs op on p's host name (hostName), releasing what reaching it
// opened. op does not escape: no allocation for a short path.
func atHost(p string, op func(q string) error) error {
	q, release, err := hostName(p)
	if err != nil {
		return err
	}
	defer release()
	return op(q)
}

// atHostValue is atHost for an op with a result.
func atHostValue[T any](p string, op func(q string) (T, error)) (T, error) {
	q, release, err := hostName(p)
	if err != nil {
		var zero T
		return zero, err
	}
	defer release()
	return op(q)
}

// atHosts is atHost for two paths (rename, link).
func atHosts(from, to string, op func(a, b string) error) error {
	a, releaseA, err := hostName(from)
	if err != nil {
		return err
	}
	defer releaseA()
	b, releaseB, err := hostName(to)
	if err != nil {
		return err
	}
	defer releaseB()
	return op(a, b)
}

func hostLstat(p string, st *unix.Stat_t) error {
	return atHost(p, func(q string) error { return unix.Lstat(q, st) })
}

func hostStatx(p string, flags, mask int, sx *unix.Statx_t) error {
	return atHost(p, func(q string) error { return unix.Statx(unix.AT_FDCWD, q, flags, mask, sx) })
}

func hostLgetxattr(p, attr string, dest []byte) (int, error) {
	return atHostValue(p, func(q string) (int, error) { return unix.Lgetxattr(q, attr, dest) })
}

func hostLsetxattr(p, attr string, data []byte, flags int) error {
	return atHost(p, func(q string) error { return unix.Lsetxattr(q, attr, data, flags) })
}

func hostLlistxattr(p string, dest []byte) (int, error) {
	return atHostValue(p, func(q string) (int, error) { return unix.Llistxattr(q, dest) })
}

func hostChmod(p string, mode uint32) error {
	return atHost(p, func(q string) error { return unix.Chmod(q, mode) })
}

func hostLchown(p string, uid, gid int) error {
	return atHost(p, func(q string) error { return unix.Lchown(q, uid, gid) })
}

func hostTruncate(p string, size int64) error {
	return atHost(p, func(q string) error { return unix.Truncate(q, size) })
}

// hostUtimes sets times without following a symlink.
func hostUtimes(p string, ts []unix.Timespec) error {
	return atHost(p, func(q string) error { return unix.UtimesNanoAt(unix.AT_FDCWD, q, ts, unix.AT_SYMLINK_NOFOLLOW) })
}

func hostMkdir(p string, mode uint32) error {
	return atHost(p, func(q string) error { return unix.Mkdir(q, mode) })
}

func hostMknod(p string, mode uint32, dev int) error {
	return atHost(p, func(q string) error { return unix.Mknod(q, mode, dev) })
}

func hostOpen(p string, flags int, mode uint32) (int, error) {
	return atHostValue(p, func(q string) (int, error) { return unix.Open(q, flags, mode) })
}

// hostSymlink creates a symlink at p; target is its text, not a path
// nfsd resolves.
func hostSymlink(target, p string) error {
	return atHost(p, func(q string) error { return unix.Symlink(target, q) })
}

func hostUnlink(p string) error {
	return atHost(p, func(q string) error { return unix.Unlink(q) })
}

func hostRmdir(p string) error {
	return atHost(p, func(q string) error { return unix.Rmdir(q) })
}

func hostRenameat2(from, to string, flags uint) error {
	return atHosts(from, to, func(a, b string) error { return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, flags) })
}

func hostRename(from, to string) error { return hostRenameat2(from, to, 0) }

func hostLink(from, to string) error {
	return atHosts(from, to, func(a, b string) error { return unix.Link(a, b) })
}

// hostOpenFile is os.OpenFile for regular files and directories; the file
// stays usable after the directories opened to reach it are closed. The
// descriptor is wrapped as it is (blocking, as such files are anyway):
// os.OpenFile would try to add it to the poller and set it non-blocking,
// four more syscalls for every WRITE and every uncached READ open.
func hostOpenFile(p string, flag int, perm os.FileMode) (*os.File, error) {
	fd, err := hostOpen(p, flag|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

func hostReadlink(p string) (string, error) {
	q, release, err := hostName(p)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: p, Err: err}
	}
	defer release()
	return os.Readlink(q)
}

func hostRemove(p string) error {
	return atHost(p, func(q string) error { return os.Remove(q) })
}

// hostRemoveAll is os.RemoveAll, which walks below its argument with
// relative names (no length limit there).
func hostRemoveAll(p string) error {
	return atHost(p, func(q string) error { return os.RemoveAll(q) })
}
