package nfsd

import (
	"os"
	"time"

	nfs "github.com/willscott/go-nfs"
	"golang.org/x/sys/unix"
)

// The billy.Change and nfs.UnixChange go-nfs uses for SETATTR, MKNOD and
// LINK. Every change copies the object up into the own layer first.

var _ nfs.UnixChange = (*export)(nil)

// Chmod sets the permission bits through the billy interface (clients'
// SETATTR is answered by nfsd itself, proc_change.go, with the full mode).
// go-nfs masks modes to 0777, so the setuid, setgid and sticky bits the
// object has are kept: `chmod g+w` on a setgid directory or
// `chmod 1777 /tmp` must not silently strip them. Go's own ModeSetuid etc.,
// if a caller passes them, do set the bits.
func (x *export) Chmod(name string, mode os.FileMode) error {
	return x.change("chmod", name, false, func(host string, st *unix.Stat_t) error {
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil // Linux has no symlink modes
		}
		bits := uint32(mode.Perm())
		if mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			if mode&os.ModeSetuid != 0 {
				bits |= unix.S_ISUID
			}
			if mode&os.ModeSetgid != 0 {
				bits |= unix.S_ISGID
			}
			if mode&os.ModeSticky != 0 {
				bits |= unix.S_ISVTX
			}
		} else {
			bits |= st.Mode & (unix.S_ISUID | unix.S_ISGID | unix.S_ISVTX)
		}
		return hostChmod(host, bits)
	})
}

func (x *export) Lchown(name string, uid, gid int) error {
	return x.change("chown", name, false, func(host string, st *unix.Stat_t) error {
		return hostLchown(host, uid, gid)
	})
}

func (x *export) Chown(name string, uid, gid int) error {
	return x.change("chown", name, true, func(host string, st *unix.Stat_t) error {
		return hostLchown(host, uid, gid)
	})
}

func (x *export) Chtimes(name string, atime, mtime time.Time) error {
	return x.change("utimes", name, false, func(host string, st *unix.Stat_t) error {
		ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
		return hostUtimes(host, ts)
	})
}

func (x *export) change(op, name string, follow bool, apply func(string, *unix.Stat_t) error) error {
	p, err := cleanPath(name)
	if err != nil {
		return pathErr(op, name, err)
	}
	if !x.writable.Load() {
		return pathErr(op, p, unix.EROFS)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.t
	if follow {
		e, err := x.follow(t, p)
		if err != nil {
			return err
		}
		p = e.path
	}
	return x.setAttrs(t, p, apply)
}

// Mknod creates a block device. go-nfs v0.0.4 calls Mknod only for NF3BLK
// (its NF3CHR case is empty and creates nothing, see GO_NFS_DEFECTS.md) and
// passes permission bits without the type, so the type is fixed here.
func (x *export) Mknod(name string, mode uint32, major, minor uint32) error {
	return x.mknod(name, unix.S_IFBLK, mode, unix.Mkdev(major, minor))
}

func (x *export) Mkfifo(name string, mode uint32) error {
	return x.mknod(name, unix.S_IFIFO, mode, 0)
}

func (x *export) Socket(name string) error {
	return x.mknod(name, unix.S_IFSOCK, 0o755, 0)
}

func (x *export) mknod(name string, typ, mode uint32, rdev uint64) error {
	p, err := cleanPath(name)
	if err != nil {
		return pathErr("mknod", name, err)
	}
	if !x.writable.Load() {
		return pathErr("mknod", p, unix.EROFS)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	uid, gid := x.newOwner()
	_, err = x.create(x.t, p, newObject{typ: typ, perm: mode & 0o7777, rdev: rdev, uid: uid, gid: gid})
	return err
}

// Link makes link a new name of path. Clients' LINK calls are answered by
// nfsd (proc_change.go): go-nfs v0.0.4's LINK decodes its arguments in the
// wrong order.
func (x *export) Link(path, link string) error {
	op, err := cleanPath(path)
	if err != nil {
		return pathErr("link", path, err)
	}
	np, err := cleanPath(link)
	if err != nil {
		return pathErr("link", link, err)
	}
	if !x.writable.Load() {
		return pathErr("link", np, unix.EROFS)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.link(x.t, op, np)
}
