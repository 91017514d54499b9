package ext4

import (
	"encoding/binary"
	"fmt"
)

// Extent maps a run of a file's bytes to bytes of the filesystem.
// Offsets and lengths are in bytes; ranges of the file not covered by any
// extent are holes and read as zeros.
type Extent struct {
	Logical  int64 // offset in the file
	Physical int64 // offset in the filesystem
	Length   int64
	// Unwritten extents (fallocated, never written) read as zeros.
	Unwritten bool
}

// Data describes where a file's bytes are.
type Data struct {
	// Inline holds the whole content of an inline_data inode; Extents is
	// then empty.
	Inline  []byte
	Extents []Extent
	Size    int64
}

const maxExtentDepth = 5

// FileData returns the layout of a regular file, directory or slow symlink.
// Extents are sorted by Logical and clipped to the file size.
func (fs *FS) FileData(i *Inode) (*Data, error) {
	d := &Data{Size: int64(i.Size)}
	if i.Flags&flagInlineData != 0 {
		b, err := fs.inlineData(i)
		if err != nil {
			return nil, err
		}
		d.Inline = b
		return d, nil
	}
	var err error
	if i.Flags&flagExtents != 0 {
		err = fs.walkExtents(i.Num, i.iblock[:], maxExtentDepth, &d.Extents)
	} else {
		err = fs.walkBlockMap(i, &d.Extents)
	}
	if err != nil {
		return nil, err
	}
	// Clip to the file size: blocks past EOF (preallocated, verity metadata)
	// are not content.
	out := d.Extents[:0]
	var last int64
	for _, e := range d.Extents {
		if e.Logical < last {
			return nil, corrupt("inode %d: overlapping extents at file offset %d", i.Num, e.Logical)
		}
		if e.Logical >= d.Size {
			continue
		}
		if e.Logical+e.Length > d.Size {
			e.Length = d.Size - e.Logical
		}
		last = e.Logical + e.Length
		out = append(out, e)
	}
	d.Extents = out
	return d, nil
}

func (fs *FS) walkExtents(ino uint32, node []byte, depthLeft int, out *[]Extent) error {
	le := binary.LittleEndian
	if len(node) < 12 || le.Uint16(node) != 0xF30A {
		return corrupt("inode %d: bad extent header", ino)
	}
	entries := int(le.Uint16(node[2:]))
	depth := int(le.Uint16(node[6:]))
	if 12+entries*12 > len(node) {
		return corrupt("inode %d: %d extent entries do not fit", ino, entries)
	}
	if depth >= depthLeft {
		return corrupt("inode %d: extent tree depth %d", ino, depth)
	}
	for k := 0; k < entries; k++ {
		e := node[12+12*k:]
		lblk := int64(le.Uint32(e))
		if depth == 0 {
			n := int64(le.Uint16(e[4:]))
			unwritten := false
			if n > 32768 {
				n -= 32768
				unwritten = true
			}
			start := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if n == 0 {
				continue
			}
			if start+uint64(n) > fs.blocksCount {
				return corrupt("inode %d: extent at block %d+%d beyond the end", ino, start, n)
			}
			*out = append(*out, Extent{
				Logical:   lblk * fs.BlockSize,
				Physical:  int64(start) * fs.BlockSize,
				Length:    n * fs.BlockSize,
				Unwritten: unwritten,
			})
			continue
		}
		leaf := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		buf := make([]byte, fs.BlockSize)
		if err := fs.readBlock(leaf, buf); err != nil {
			return fmt.Errorf("inode %d: extent index: %w", ino, err)
		}
		if err := fs.walkExtents(ino, buf, depth, out); err != nil {
			return err
		}
	}
	return nil
}

// walkBlockMap reads ext2/ext3 style direct and indirect block pointers.
func (fs *FS) walkBlockMap(i *Inode, out *[]Extent) error {
	le := binary.LittleEndian
	nblocks := (int64(i.Size) + fs.BlockSize - 1) / fs.BlockSize
	perBlock := fs.BlockSize / 4
	var lblk int64
	add := func(p uint64) error {
		defer func() { lblk++ }()
		if p == 0 {
			return nil // hole
		}
		if p >= fs.blocksCount {
			return corrupt("inode %d: block %d beyond the end", i.Num, p)
		}
		phys := int64(p) * fs.BlockSize
		if n := len(*out); n > 0 {
			last := &(*out)[n-1]
			if last.Logical+last.Length == lblk*fs.BlockSize && last.Physical+last.Length == phys {
				last.Length += fs.BlockSize
				return nil
			}
		}
		*out = append(*out, Extent{Logical: lblk * fs.BlockSize, Physical: phys, Length: fs.BlockSize})
		return nil
	}
	var walk func(blk uint64, level int) error
	walk = func(blk uint64, level int) error {
		if blk == 0 {
			span := int64(1)
			for l := 0; l < level; l++ {
				span *= perBlock
			}
			lblk += span
			return nil
		}
		if level == 0 {
			return add(blk)
		}
		buf := make([]byte, fs.BlockSize)
		if err := fs.readBlock(blk, buf); err != nil {
			return fmt.Errorf("inode %d: indirect block: %w", i.Num, err)
		}
		for k := int64(0); k < perBlock && lblk < nblocks; k++ {
			if err := walk(uint64(le.Uint32(buf[4*k:])), level-1); err != nil {
				return err
			}
		}
		return nil
	}
	for k := 0; k < 15 && lblk < nblocks; k++ {
		level := 0
		switch k {
		case 12:
			level = 1
		case 13:
			level = 2
		case 14:
			level = 3
		}
		if err := walk(uint64(le.Uint32(i.iblock[4*k:])), level); err != nil {
			return err
		}
	}
	return nil
}

func (fs *FS) inlineData(i *Inode) ([]byte, error) {
	n := int(i.Size)
	head := i.iblock[:]
	if n <= len(head) {
		return append([]byte(nil), head[:n]...), nil
	}
	out := append([]byte(nil), head...)
	x, err := fs.inodeXattrs(i)
	if err != nil {
		return nil, err
	}
	rest := x["system.data"]
	if len(out)+len(rest) < n {
		return nil, corrupt("inode %d: inline data has %d of %d bytes", i.Num, len(out)+len(rest), n)
	}
	return append(out, rest[:n-len(out)]...), nil
}

// ReadAll returns the whole content of a small file (directory, symlink).
func (fs *FS) ReadAll(i *Inode, limit int64) ([]byte, error) {
	if int64(i.Size) > limit || int64(i.Size) > fs.Size || int64(i.Size) < 0 {
		return nil, corrupt("inode %d: size %d over the limit %d", i.Num, i.Size, min(limit, fs.Size))
	}
	d, err := fs.FileData(i)
	if err != nil {
		return nil, err
	}
	if d.Inline != nil {
		return d.Inline, nil
	}
	buf := make([]byte, d.Size)
	for _, e := range d.Extents {
		if e.Unwritten {
			continue
		}
		if err := fs.readAt(buf[e.Logical:e.Logical+e.Length], e.Physical); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// ReadLink returns a symlink's target, byte for byte.
func (fs *FS) ReadLink(i *Inode) (string, error) {
	if !i.IsSymlink() {
		return "", fmt.Errorf("inode %d is not a symlink", i.Num)
	}
	if fs.isFastSymlink(i) {
		if i.Size > 60 {
			return "", corrupt("inode %d: fast symlink of %d bytes", i.Num, i.Size)
		}
		return string(i.iblock[:i.Size]), nil
	}
	b, err := fs.ReadAll(i, 1<<16)
	return string(b), err
}
