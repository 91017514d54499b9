// Package ext4 reads ext2/3/4 filesystems from an io.ReaderAt without
// mounting them: directories, inodes with owners, modes, device numbers and
// nanosecond times, extended attributes (in-inode and block), inline data,
// extent trees and the old indirect block maps.
//
// It exists because go-diskfs' ext4 reader (the card's choice, still used
// for partition tables and FAT) exposes no extended attributes, returns the
// wrong bytes for holes and unwritten extents, and panics on inline_data.
// Reading is all pictl needs: images are imported, never written in place.
package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// RootIno is the inode number of the root directory.
const RootIno = 2

// UnsupportedFeatureError names a filesystem feature this reader refuses.
type UnsupportedFeatureError struct {
	Feature string
}

func (e *UnsupportedFeatureError) Error() string {
	return fmt.Sprintf("ext4 feature %q is not supported", e.Feature)
}

// ErrCorrupt is wrapped by every error caused by inconsistent on-disk data.
var ErrCorrupt = errors.New("corrupt ext4 filesystem")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// ErrNotExt4 means the superblock magic is missing.
var ErrNotExt4 = errors.New("not an ext2/3/4 filesystem")

const (
	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargedir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	roCompatSparseSuper = 0x1
	compatSparseSuper2  = 0x200
)

// incompatNames lists the incompatible features this reader does not
// understand, by the names mke2fs and tune2fs use.
var incompatNames = []struct {
	bit  uint32
	name string
}{
	{incompatCompression, "compression"},
	{incompatRecover, "needs_recovery"},
	{incompatJournalDev, "journal_dev"},
	{incompatEAInode, "ea_inode"},
	{incompatDirData, "dirdata"},
	{incompatEncrypt, "encrypt"},
}

const knownIncompat = incompatCompression | incompatFiletype | incompatRecover | incompatJournalDev |
	incompatMetaBG | incompatExtents | incompat64bit | incompatMMP | incompatFlexBG | incompatEAInode |
	incompatDirData | incompatCsumSeed | incompatLargedir | incompatInlineData | incompatEncrypt | incompatCasefold

// FS is an open filesystem. It is safe for concurrent use: it only issues
// ReadAt calls on the underlying reader.
type FS struct {
	r io.ReaderAt
	// Size is the byte length the filesystem claims (blocks × block size).
	Size int64

	BlockSize       int64
	blocksCount     uint64
	firstDataBlock  uint64
	blocksPerGroup  uint64
	inodesPerGroup  uint32
	inodesCount     uint32
	inodeSize       int64
	descSize        int64
	groups          uint64
	incompat        uint32
	roCompat        uint32
	compat          uint32
	firstMetaBG     uint32
	clusterSize     int64
	inodeTables     []uint64 // per group, block number of the inode table
	Label           string
	UUID            [16]byte
	hasFiletypeInDE bool
}

// Open reads the superblock and group descriptors of the filesystem that
// starts at offset 0 of r; size is the partition length in bytes.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xEF53 {
		return nil, ErrNotExt4
	}
	fs := &FS{r: r}
	logBS := le.Uint32(sb[0x18:])
	if logBS > 6 {
		return nil, corrupt("block size 2^(10+%d)", logBS)
	}
	fs.BlockSize = 1024 << logBS
	fs.inodesCount = le.Uint32(sb[0x0:])
	fs.blocksCount = uint64(le.Uint32(sb[0x4:]))
	fs.firstDataBlock = uint64(le.Uint32(sb[0x14:]))
	logCluster := le.Uint32(sb[0x1C:])
	if logCluster > 30 {
		return nil, corrupt("cluster size 2^(10+%d)", logCluster)
	}
	fs.clusterSize = 1024 << logCluster
	fs.blocksPerGroup = uint64(le.Uint32(sb[0x20:]))
	fs.inodesPerGroup = le.Uint32(sb[0x28:])
	fs.compat = le.Uint32(sb[0x5C:])
	fs.incompat = le.Uint32(sb[0x60:])
	fs.roCompat = le.Uint32(sb[0x64:])
	fs.inodeSize = 128
	if le.Uint32(sb[0x4C:]) >= 1 { // dynamic revision
		fs.inodeSize = int64(le.Uint16(sb[0x58:]))
	}
	if fs.inodeSize < 128 || fs.inodeSize > fs.BlockSize || fs.inodeSize&(fs.inodeSize-1) != 0 {
		return nil, corrupt("inode size %d", fs.inodeSize)
	}
	fs.descSize = 32
	if fs.incompat&incompat64bit != 0 {
		fs.blocksCount |= uint64(le.Uint32(sb[0x150:])) << 32
		fs.descSize = int64(le.Uint16(sb[0xFE:]))
		if fs.descSize < 32 || fs.descSize > fs.BlockSize || fs.descSize&(fs.descSize-1) != 0 {
			return nil, corrupt("group descriptor size %d", fs.descSize)
		}
	}
	fs.firstMetaBG = le.Uint32(sb[0x104:])
	fs.Label = strings.TrimRight(string(sb[0x78:0x88]), "\x00")
	copy(fs.UUID[:], sb[0x68:0x78])
	fs.hasFiletypeInDE = fs.incompat&incompatFiletype != 0

	for _, f := range incompatNames {
		if fs.incompat&f.bit != 0 {
			return nil, &UnsupportedFeatureError{Feature: f.name}
		}
	}
	if unknown := fs.incompat &^ knownIncompat; unknown != 0 {
		return nil, &UnsupportedFeatureError{Feature: fmt.Sprintf("incompat 0x%x", unknown)}
	}

	if fs.blocksPerGroup == 0 || fs.inodesPerGroup == 0 || fs.blocksCount <= fs.firstDataBlock {
		return nil, corrupt("empty geometry (blocks per group %d, inodes per group %d)", fs.blocksPerGroup, fs.inodesPerGroup)
	}
	fs.Size = int64(fs.blocksCount) * fs.BlockSize
	if fs.Size > size {
		return nil, fmt.Errorf("%w: filesystem is %d bytes but its partition holds only %d", ErrTruncated, fs.Size, size)
	}
	fs.groups = (fs.blocksCount - fs.firstDataBlock + fs.blocksPerGroup - 1) / fs.blocksPerGroup
	if uint64(fs.inodesCount) > fs.groups*uint64(fs.inodesPerGroup) {
		return nil, corrupt("%d inodes in %d groups of %d", fs.inodesCount, fs.groups, fs.inodesPerGroup)
	}
	if err := fs.readGroupDescriptors(); err != nil {
		return nil, err
	}
	return fs, nil
}

// ErrTruncated means the filesystem extends past the end of its data.
var ErrTruncated = errors.New("filesystem truncated")

func (fs *FS) hasSuper(group uint64) bool {
	if fs.roCompat&roCompatSparseSuper == 0 || group <= 1 {
		return true
	}
	for _, base := range []uint64{3, 5, 7} {
		n := base
		for n < group {
			n *= base
		}
		if n == group {
			return true
		}
	}
	return false
}

func (fs *FS) readGroupDescriptors() error {
	perBlock := uint64(fs.BlockSize / fs.descSize)
	nblocks := (fs.groups + perBlock - 1) / perBlock
	fs.inodeTables = make([]uint64, 0, fs.groups)
	buf := make([]byte, fs.BlockSize)
	for d := uint64(0); d < nblocks; d++ {
		var blk uint64
		if fs.incompat&incompatMetaBG == 0 || d < uint64(fs.firstMetaBG) {
			blk = fs.firstDataBlock + 1 + d
		} else {
			g := d * perBlock
			blk = fs.firstDataBlock + g*fs.blocksPerGroup
			if fs.hasSuper(g) {
				blk++
			}
		}
		if err := fs.readBlock(blk, buf); err != nil {
			return fmt.Errorf("read group descriptors: %w", err)
		}
		for i := uint64(0); i < perBlock && uint64(len(fs.inodeTables)) < fs.groups; i++ {
			gd := buf[i*uint64(fs.descSize):]
			t := uint64(binary.LittleEndian.Uint32(gd[0x8:]))
			if fs.descSize >= 64 {
				t |= uint64(binary.LittleEndian.Uint32(gd[0x28:])) << 32
			}
			if t == 0 || t >= fs.blocksCount {
				return corrupt("group %d: inode table at block %d", len(fs.inodeTables), t)
			}
			fs.inodeTables = append(fs.inodeTables, t)
		}
	}
	return nil
}

func (fs *FS) readBlock(blk uint64, buf []byte) error {
	if blk >= fs.blocksCount {
		return corrupt("block %d beyond the end (%d blocks)", blk, fs.blocksCount)
	}
	return fs.readAt(buf, int64(blk)*fs.BlockSize)
}

func (fs *FS) readAt(buf []byte, off int64) error {
	n, err := fs.r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: short read at byte %d", ErrTruncated, off)
	}
	return err
}

// Inodes returns the number of inodes the filesystem has room for.
func (fs *FS) Inodes() uint32 { return fs.inodesCount }
