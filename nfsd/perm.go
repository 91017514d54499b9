package nfsd

import (
	"golang.org/x/sys/unix"
)

// Permission checks as the Linux kernel makes them for knfsd: the caller's
// uid, gid and groups against the object's owner, group and mode bits
// (generic_permission), the sticky-directory rule (may_delete), and
// knfsd's overrides (an owner may always read and write an open file,
// READ is allowed where EXECUTE is). Every check uses the lstat the
// resolution of the handle already made: no syscall of its own.

const (
	mayExec  = 1
	mayWrite = 2
	mayRead  = 4
)

// permits reports whether c may access an object with attributes st as
// want (a mask of mayRead, mayWrite, mayExec). Root may do anything but
// execute a file no one may execute.
func permits(c cred, st *unix.Stat_t, want uint32) bool {
	mode := st.Mode
	if c.root() {
		if want&mayExec != 0 && mode&unix.S_IFMT != unix.S_IFDIR && mode&0o111 == 0 {
			return false
		}
		return true
	}
	var bits uint32
	switch {
	case st.Uid == c.uid:
		bits = mode >> 6 & 7
	case c.inGroup(st.Gid):
		bits = mode >> 3 & 7
	default:
		bits = mode & 7
	}
	return bits&want == want
}

// mayReadData: READ of a file (knfsd: owner override, read if executable).
func mayReadData(c cred, st *unix.Stat_t) bool {
	return permits(c, st, mayRead) || st.Uid == c.uid || permits(c, st, mayExec)
}

// mayWriteData: WRITE and truncation (knfsd: owner override).
func mayWriteData(c cred, st *unix.Stat_t) bool {
	return permits(c, st, mayWrite) || st.Uid == c.uid
}

// mayChangeEntries: creating or removing names in directory dir.
func mayChangeEntries(c cred, dir *unix.Stat_t) bool {
	return permits(c, dir, mayWrite|mayExec)
}

// stickyForbids: in a sticky directory only the owner of the directory or
// of the object (or root) may remove or rename the object.
func stickyForbids(c cred, dir, obj *unix.Stat_t) bool {
	return dir.Mode&unix.S_ISVTX != 0 && !c.root() && c.uid != dir.Uid && c.uid != obj.Uid
}

// ACCESS3 bits.
const (
	access3Read    = 0x01
	access3Lookup  = 0x02
	access3Modify  = 0x04
	access3Extend  = 0x08
	access3Delete  = 0x10
	access3Execute = 0x20
)

// accessMask answers ACCESS: the bits of asked the caller has on the
// object, as knfsd's nfsd_access computes them (directories: DELETE is the
// right to remove entries; files: DELETE is not granted by the file).
func accessMask(c cred, st *unix.Stat_t, asked uint32, writable bool) uint32 {
	var got uint32
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if asked&access3Read != 0 && permits(c, st, mayRead) {
		got |= access3Read
	}
	if isDir {
		if asked&access3Lookup != 0 && permits(c, st, mayExec) {
			got |= access3Lookup
		}
		if writable && permits(c, st, mayWrite|mayExec) {
			got |= asked & (access3Modify | access3Extend | access3Delete)
		}
	} else {
		if asked&access3Execute != 0 && permits(c, st, mayExec) {
			got |= access3Execute
		}
		if writable && permits(c, st, mayWrite) {
			got |= asked & (access3Modify | access3Extend)
		}
	}
	return got
}
