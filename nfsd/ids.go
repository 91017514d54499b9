package nfsd

import (
	"encoding/binary"
	"hash/fnv"

	"golang.org/x/sys/unix"
)

// A fileID is the identity of one file of an export: it is the NFS fileid
// clients see as the inode number and, with the export, what a file handle
// names. It never depends on the file's current path, so a handle survives
// renames, copy-up and server restarts.
//
// The top two bits say where the identity comes from:
//
//	00  special (only rootID)
//	01  inode number in a read-only lower tree (image, or a volume)
//	10  sequence number allocated when the file was created in a node's own
//	    layer, stored in the file's trusted.pictl.id xattr
//	11  hash of the path of a file that exists only in a role layer
//
// A file copied up from a lower layer keeps its lower identity (the xattr
// holds it), so the handle a client already has stays valid.
type fileID uint64

const (
	rootID fileID = 1

	idKindMask  fileID = 3 << 62
	idKindInode fileID = 1 << 62
	idKindSeq   fileID = 2 << 62
	idKindRole  fileID = 3 << 62
	idValueMask fileID = ^idKindMask
)

func (id fileID) kind() fileID { return id & idKindMask }

func inodeID(ino uint64) fileID { return idKindInode | fileID(ino)&idValueMask }

// A volume's files change behind nfsd's back and their inode numbers are
// reused as soon as a file is deleted: an identity of the inode number
// alone would hand the new file the deleted one's handle (the Linux client
// then takes the new object for the old, dead inode: ENOENT on the first
// use of a fresh directory; a write could reach the wrong file). knfsd
// puts the inode's generation in its handles; nfsd tags a volume identity
// with a hash of the inode's birth time: bit 61 set, 21 bits of tag, 40
// bits of inode number. Files whose inode number does not fit, or whose
// file system reports no birth time, keep the plain inode identity.
const (
	idTagged   fileID = 1 << 61
	idTagShift        = 40
	idInoMask  fileID = 1<<idTagShift - 1
	idTagMask  fileID = 1<<21 - 1
)

func taggedInodeID(ino uint64, btime unix.StatxTimestamp) fileID {
	if ino > uint64(idInoMask) {
		return inodeID(ino)
	}
	h := fnv.New64a()
	var b [12]byte
	binary.BigEndian.PutUint64(b[:], uint64(btime.Sec))
	binary.BigEndian.PutUint32(b[8:], btime.Nsec)
	_, _ = h.Write(b[:])
	tag := fileID(h.Sum64()) & idTagMask
	return idKindInode | idTagged | tag<<idTagShift | fileID(ino)
}

// ino is the inode number an inode identity names.
func (id fileID) ino() uint64 {
	if id&idTagged != 0 {
		return uint64(id & idInoMask)
	}
	return uint64(id & idValueMask)
}

func seqID(n uint64) fileID { return idKindSeq | fileID(n)&idValueMask }

// roleID names a role-layer-only file by its path: role layers are
// re-rendered into new trees, so inode numbers would change on every swap,
// while the path of a rendered file does not.
func roleID(path string) fileID {
	h := fnv.New64a()
	_, _ = h.Write([]byte(path))
	v := fileID(h.Sum64()) & idValueMask
	if v == 0 {
		v = 1
	}
	return idKindRole | v
}

func (id fileID) bytes() []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return b[:]
}

func fileIDFrom(b []byte) (fileID, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return fileID(binary.BigEndian.Uint64(b)), true
}
