package ext4

import (
	"encoding/binary"
	"time"
)

// Unix file type bits of Inode.Mode.
const (
	TypeMask   = 0xF000
	TypeFIFO   = 0x1000
	TypeChar   = 0x2000
	TypeDir    = 0x4000
	TypeBlock  = 0x6000
	TypeFile   = 0x8000
	TypeLink   = 0xA000
	TypeSocket = 0xC000
)

const (
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagEAInode    = 0x200000
	flagInlineData = 0x10000000
	flagEncrypt    = 0x800
)

// Inode is one decoded inode.
type Inode struct {
	Num   uint32
	Mode  uint16 // type and permission bits, as in stat(2)
	UID   uint32
	GID   uint32
	Size  uint64
	Links uint16
	Atime time.Time
	Mtime time.Time
	Ctime time.Time
	Flags uint32

	blocks  uint64 // i_blocks, in 512-byte units unless flagHugeFile
	fileACL uint64
	iblock  [60]byte
	extra   []byte // bytes after the 128-byte base inode, for in-inode xattrs
}

// IsDir and friends test the file type.
func (i *Inode) IsDir() bool     { return i.Mode&TypeMask == TypeDir }
func (i *Inode) IsRegular() bool { return i.Mode&TypeMask == TypeFile }
func (i *Inode) IsSymlink() bool { return i.Mode&TypeMask == TypeLink }

// Rdev returns the device numbers of a character or block device inode.
func (i *Inode) Rdev() (major, minor uint32) {
	le := binary.LittleEndian
	if old := le.Uint32(i.iblock[0:]); old != 0 {
		return (old >> 8) & 0xff, old & 0xff
	}
	n := le.Uint32(i.iblock[4:])
	return (n & 0xfff00) >> 8, (n & 0xff) | ((n >> 12) & 0xfff00)
}

// Inode reads inode number n.
func (fs *FS) Inode(n uint32) (*Inode, error) {
	if n == 0 || n > fs.inodesCount {
		return nil, corrupt("inode number %d out of range 1..%d", n, fs.inodesCount)
	}
	g := (n - 1) / fs.inodesPerGroup
	idx := (n - 1) % fs.inodesPerGroup
	off := int64(fs.inodeTables[g])*fs.BlockSize + int64(idx)*fs.inodeSize
	buf := make([]byte, fs.inodeSize)
	if err := fs.readAt(buf, off); err != nil {
		return nil, err
	}
	return fs.decodeInode(n, buf)
}

func (fs *FS) decodeInode(n uint32, b []byte) (*Inode, error) {
	le := binary.LittleEndian
	ino := &Inode{
		Num:   n,
		Mode:  le.Uint16(b[0x0:]),
		UID:   uint32(le.Uint16(b[0x2:])) | uint32(le.Uint16(b[0x78:]))<<16,
		GID:   uint32(le.Uint16(b[0x18:])) | uint32(le.Uint16(b[0x7A:]))<<16,
		Size:  uint64(le.Uint32(b[0x4:])) | uint64(le.Uint32(b[0x6C:]))<<32,
		Links: le.Uint16(b[0x1A:]),
		Flags: le.Uint32(b[0x20:]),
	}
	ino.blocks = uint64(le.Uint32(b[0x1C:])) | uint64(le.Uint16(b[0x74:]))<<32
	ino.fileACL = uint64(le.Uint32(b[0x68:])) | uint64(le.Uint16(b[0x76:]))<<32
	copy(ino.iblock[:], b[0x28:0x64])
	extraSize := 0
	if len(b) > 128 {
		extraSize = int(le.Uint16(b[0x80:]))
		if extraSize&3 != 0 || 128+extraSize > len(b) {
			return nil, corrupt("inode %d: extra size %d", n, extraSize)
		}
		ino.extra = b[128:]
	}
	ts := func(base, extraOff int) time.Time {
		sec := int64(int32(le.Uint32(b[base:])))
		var nsec int64
		if extraOff+4 <= 128+extraSize {
			x := le.Uint32(b[extraOff:])
			sec += int64(x&3) << 32
			nsec = int64(x >> 2)
			if nsec > 999999999 {
				nsec = 0
			}
		}
		return time.Unix(sec, nsec)
	}
	ino.Atime = ts(0x8, 0x8C)
	ino.Ctime = ts(0xC, 0x84)
	ino.Mtime = ts(0x10, 0x88)
	if ino.Flags&flagEncrypt != 0 {
		return nil, &UnsupportedFeatureError{Feature: "encrypt"}
	}
	return ino, nil
}

// ExtraIsize returns the in-inode space used by fixed fields beyond 128 bytes.
func (i *Inode) extraIsize() int {
	if len(i.extra) < 2 {
		return 0
	}
	return int(binary.LittleEndian.Uint16(i.extra))
}

// isFastSymlink follows the kernel's ext4_inode_is_fast_symlink.
func (fs *FS) isFastSymlink(i *Inode) bool {
	if !i.IsSymlink() || i.Flags&flagInlineData != 0 {
		return false
	}
	if i.Flags&flagEAInode != 0 {
		return i.Size > 0 && i.Size < 60
	}
	var ea uint64
	if i.fileACL != 0 {
		ea = uint64(fs.clusterSize >> 9)
	}
	return i.blocks-ea == 0
}
