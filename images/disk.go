package images

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/pictl/pictl/images/internal/ext4"
)

// partitionInfo is one partition of a disk image.
type partitionInfo struct {
	Index int
	Start int64 // bytes
	Size  int64 // bytes
	Kind  string
}

const (
	partExt4 = "ext4"
	partFAT  = "fat"
)

// diskLayout finds the root (ext4) and boot (FAT) partitions of a disk
// image. An image without a partition table that is itself an ext4
// filesystem is accepted as a root-only image.
func diskLayout(f *os.File, fileSize int64) (root, boot *partitionInfo, err error) {
	var parts []partitionInfo
	func() {
		// go-diskfs is not hardened against hostile tables.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: partition table: %v", ErrCorruptImage, r)
			}
		}()
		d, oerr := diskfs.OpenBackend(file.New(f, true), diskfs.WithOpenMode(diskfs.ReadOnly))
		if oerr != nil {
			return
		}
		table, terr := d.GetPartitionTable()
		if terr != nil || table == nil {
			return
		}
		for _, p := range table.GetPartitions() {
			if p == nil || p.GetSize() == 0 {
				continue
			}
			parts = append(parts, partitionInfo{Index: p.GetIndex(), Start: p.GetStart(), Size: p.GetSize()})
		}
	}()
	if err != nil {
		return nil, nil, err
	}
	if len(parts) == 0 {
		if kind := probeFS(f, 0); kind == partExt4 {
			return &partitionInfo{Index: 0, Start: 0, Size: fileSize, Kind: partExt4}, nil, nil
		}
		return nil, nil, fmt.Errorf("%w (no partition table and no ext4 filesystem)", ErrNoRootPartition)
	}
	for i := range parts {
		p := &parts[i]
		if p.Start+p.Size > fileSize {
			return nil, nil, fmt.Errorf("%w: partition %d ends at byte %d but the image has %d", ErrTruncatedImage, p.Index, p.Start+p.Size, fileSize)
		}
		p.Kind = probeFS(f, p.Start)
		switch {
		case p.Kind == partExt4 && (root == nil || p.Size > root.Size):
			root = p
		case p.Kind == partFAT && boot == nil:
			boot = p
		}
	}
	if root == nil {
		kinds := make([]string, 0, len(parts))
		for _, p := range parts {
			k := p.Kind
			if k == "" {
				k = "unknown"
			}
			kinds = append(kinds, fmt.Sprintf("%d:%s", p.Index, k))
		}
		return nil, nil, fmt.Errorf("%w (partitions %s)", ErrNoRootPartition, strings.Join(kinds, ", "))
	}
	return root, boot, nil
}

// probeFS names the filesystem starting at off by its magic numbers.
func probeFS(r io.ReaderAt, off int64) string {
	b := make([]byte, 2048)
	if n, _ := r.ReadAt(b, off); n < len(b) {
		return ""
	}
	if binary.LittleEndian.Uint16(b[1024+0x38:]) == 0xEF53 {
		return partExt4
	}
	if b[510] == 0x55 && b[511] == 0xAA && (bytes.HasPrefix(b[0x52:], []byte("FAT")) || bytes.HasPrefix(b[0x36:], []byte("FAT"))) {
		return partFAT
	}
	return ""
}

// importDisk copies the root filesystem into root and the boot partition
// (if any) into boot.
func importDisk(ctx context.Context, img *os.File, rootDir, bootDir string, workers int, prog *progressTracker) (*treeStats, error) {
	st, err := img.Stat()
	if err != nil {
		return nil, err
	}
	rootPart, bootPart, err := diskLayout(img, st.Size())
	if err != nil {
		return nil, err
	}
	stats, err := importExt4(ctx, img, rootPart, rootDir, workers, prog)
	if err != nil {
		return nil, err
	}
	if bootPart != nil {
		if err := importFAT(ctx, img, bootPart, bootDir); err != nil {
			return nil, fmt.Errorf("boot partition %d: %w", bootPart.Index, err)
		}
	}
	return stats, nil
}

type treeStats struct {
	Files int64
	Bytes int64
}

func importExt4(ctx context.Context, img *os.File, p *partitionInfo, dst string, workers int, prog *progressTracker) (stats *treeStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: root partition: %v", ErrCorruptImage, r)
		}
	}()
	fsys, err := ext4.Open(io.NewSectionReader(img, p.Start, p.Size), p.Size)
	if err != nil {
		return nil, fmt.Errorf("root partition %d: %w", p.Index, classifyExt4(err))
	}
	w, err := newTreeWriter(ctx, dst, workers)
	if err != nil {
		return nil, err
	}
	ex := &ext4Importer{fs: fsys, img: img, base: p.Start, w: w, seen: map[uint32]string{}, dirs: map[uint32]bool{}, prog: prog}
	if err := ex.walk(ext4.RootIno, "."); err != nil {
		w.abort()
		return nil, classifyExt4(err)
	}
	if err := w.finish(); err != nil {
		return nil, classifyExt4(err)
	}
	return &treeStats{Files: w.files.Load(), Bytes: ex.bytes}, nil
}

// classifyExt4 maps reader errors onto the package's named errors.
func classifyExt4(err error) error {
	var uf *ext4.UnsupportedFeatureError
	switch {
	case errors.As(err, &uf):
		return &UnsupportedFeatureError{Feature: uf.Feature}
	case errors.Is(err, ext4.ErrTruncated), errors.Is(err, errTruncatedSource):
		return fmt.Errorf("%w: %w", ErrTruncatedImage, err)
	case errors.Is(err, ext4.ErrCorrupt):
		return fmt.Errorf("%w: %w", ErrCorruptImage, err)
	}
	return err
}

type ext4Importer struct {
	fs    *ext4.FS
	img   *os.File
	base  int64
	w     *treeWriter
	seen  map[uint32]string // inode → first path, for hard links
	dirs  map[uint32]bool   // directories entered: a second visit is a cycle
	bytes int64
	prog  *progressTracker
	depth int
}

func (ex *ext4Importer) attrs(ino *ext4.Inode) (attrs, error) {
	x, err := ex.fs.Xattrs(ino)
	if err != nil {
		return attrs{}, err
	}
	return attrs{
		Mode:   uint32(ino.Mode),
		UID:    int(ino.UID),
		GID:    int(ino.GID),
		Atime:  ino.Atime,
		Mtime:  ino.Mtime,
		Xattrs: x,
	}, nil
}

func (ex *ext4Importer) walk(num uint32, rel string) error {
	ex.depth++
	defer func() { ex.depth-- }()
	if ex.dirs[num] {
		return fmt.Errorf("%w: directory inode %d appears twice (at %s)", ErrCorruptImage, num, rel)
	}
	ex.dirs[num] = true
	if ex.depth > 256 {
		return fmt.Errorf("%w: directories nested deeper than 256 at %s", ErrCorruptImage, rel)
	}
	dir, err := ex.fs.Inode(num)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	a, err := ex.attrs(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if err := ex.w.Dir(rel, a); err != nil {
		return err
	}
	entries, err := ex.fs.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range entries {
		child := e.Name
		if rel != "." {
			child = rel + "/" + e.Name
		}
		if err := ex.entry(e.Ino, child); err != nil {
			return err
		}
	}
	return nil
}

func (ex *ext4Importer) entry(num uint32, rel string) error {
	ino, err := ex.fs.Inode(num)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if ino.IsDir() {
		return ex.walk(num, rel)
	}
	if first, ok := ex.seen[num]; ok {
		return ex.w.Hardlink(rel, first)
	}
	if ino.Links > 1 {
		ex.seen[num] = rel
	}
	a, err := ex.attrs(ino)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	switch ino.Mode & ext4.TypeMask {
	case ext4.TypeFile:
		data, err := ex.fs.FileData(ino)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		ex.bytes += data.Size
		return ex.w.File(rel, a, func(f *os.File) error {
			if data.Inline != nil {
				if _, err := f.Write(data.Inline); err != nil {
					return err
				}
			} else {
				for _, e := range data.Extents {
					if e.Unwritten {
						continue
					}
					if err := copyRange(f, ex.img, e.Logical, ex.base+e.Physical, e.Length); err != nil {
						return err
					}
				}
				if err := f.Truncate(data.Size); err != nil {
					return err
				}
			}
			ex.prog.add(data.Size)
			return nil
		})
	case ext4.TypeLink:
		target, err := ex.fs.ReadLink(ino)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return ex.w.Symlink(rel, target, a)
	case ext4.TypeChar, ext4.TypeBlock:
		maj, minor := ino.Rdev()
		return ex.w.Node(rel, a, maj, minor)
	case ext4.TypeFIFO, ext4.TypeSocket:
		return ex.w.Node(rel, a, 0, 0)
	default:
		return fmt.Errorf("%w: %s: inode %d has file type 0%o", ErrCorruptImage, rel, num, ino.Mode&ext4.TypeMask)
	}
}

// importFAT copies the boot partition with go-diskfs. FAT has no owners
// or permission bits: files become root-owned 0644, directories 0755.
func importFAT(ctx context.Context, img *os.File, p *partitionInfo, dst string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: FAT reader: %v", ErrCorruptImage, r)
		}
	}()
	var fsys filesystem.FileSystem
	fsys, err = fat32.Read(file.New(img, true), p.Size, p.Start, 512)
	if err != nil {
		d, oerr := diskfs.OpenBackend(file.New(img, true), diskfs.WithOpenMode(diskfs.ReadOnly))
		if oerr != nil {
			return fmt.Errorf("%w: %w", ErrCorruptImage, oerr)
		}
		fsys, err = d.GetFilesystem(p.Index)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorruptImage, err)
		}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return fs.WalkDir(fsys, ".", func(rel string, d fs.DirEntry, werr error) error {
		if werr != nil {
			return werr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if strings.Contains(rel, "..") && (path.Clean(rel) != rel || strings.HasPrefix(rel, "../")) {
			return fmt.Errorf("%w: FAT path %q", ErrCorruptImage, rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out := dst + "/" + rel
		if d.IsDir() {
			if err := os.Mkdir(out, 0o755); err != nil {
				return err
			}
			return nil
		}
		src, err := fsys.Open("/" + rel)
		if err != nil {
			return fmt.Errorf("open %s: %w", rel, err)
		}
		defer src.Close()
		f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, src); err != nil {
			f.Close()
			return fmt.Errorf("copy %s: %w", rel, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Chtimes(out, info.ModTime(), info.ModTime())
	})
}
