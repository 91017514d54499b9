package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// importTar unpacks a (possibly compressed) tar archive of a root
// filesystem: PAX xattrs (SCHILY.xattr.*), hard links, devices, FIFOs.
func importTar(ctx context.Context, src string, comp compression, dst string, workers int, prog *progressTracker) (*treeStats, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var r io.Reader = bufio.NewReaderSize(&countingReader{r: in, t: prog}, 1<<20)
	dr, closeFn, err := goDecompressor(comp, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorruptCompression, comp, err)
	}
	defer closeFn()
	w, err := newTreeWriter(ctx, dst, 1)
	if err != nil {
		return nil, err
	}
	stats, err := unpackTar(tar.NewReader(dr), w, comp)
	if err != nil {
		w.abort()
		return nil, err
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	stats.Files = w.files.Load()
	return stats, nil
}

func unpackTar(tr *tar.Reader, w *treeWriter, comp compression) (*treeStats, error) {
	stats := &treeStats{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, tarErr(err, comp)
		}
		rel := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if strings.HasPrefix(rel, "../") || rel == ".." {
			return nil, fmt.Errorf("%w: entry %q leaves the archive root", ErrCorruptTar, h.Name)
		}
		a := attrs{
			Mode:  uint32(h.Mode & 0o7777),
			UID:   h.Uid,
			GID:   h.Gid,
			Atime: h.AccessTime,
			Mtime: h.ModTime,
		}
		if a.Atime.IsZero() {
			a.Atime = h.ModTime
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if a.Xattrs == nil {
					a.Xattrs = map[string][]byte{}
				}
				a.Xattrs[name] = []byte(v)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			a.Mode |= 0o040000
			err = w.Dir(rel, a)
		case tar.TypeReg, tar.TypeRegA:
			a.Mode |= 0o100000
			// The tar stream is sequential: read the content now, in
			// this goroutine, and let the worker only write it.
			content, rerr := readContent(tr, h.Size)
			if rerr != nil {
				return nil, tarErr(rerr, comp)
			}
			stats.Bytes += h.Size
			err = w.File(rel, a, func(f *os.File) error {
				defer content.Close()
				_, err := io.Copy(f, content)
				return err
			})
		case tar.TypeSymlink:
			a.Mode |= 0o120000
			err = w.Symlink(rel, h.Linkname, a)
		case tar.TypeLink:
			target := path.Clean(strings.TrimPrefix(h.Linkname, "/"))
			if strings.HasPrefix(target, "../") {
				return nil, fmt.Errorf("%w: hard link %q → %q leaves the archive root", ErrCorruptTar, h.Name, h.Linkname)
			}
			err = w.Hardlink(rel, target)
		case tar.TypeChar:
			a.Mode |= 0o020000
			err = w.Node(rel, a, uint32(h.Devmajor), uint32(h.Devminor))
		case tar.TypeBlock:
			a.Mode |= 0o060000
			err = w.Node(rel, a, uint32(h.Devmajor), uint32(h.Devminor))
		case tar.TypeFifo:
			a.Mode |= 0o010000
			err = w.Node(rel, a, 0, 0)
		default:
			continue // global headers, GNU long-name records are handled by archive/tar
		}
		if err != nil {
			return nil, err
		}
	}
	return stats, nil
}

// readContent buffers small files in memory and spools large ones to an
// unlinked temporary file so the workers never touch the tar stream.
func readContent(r io.Reader, size int64) (io.ReadCloser, error) {
	if size <= 8<<20 {
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	f, err := os.CreateTemp("", "pictl-tar-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func tarErr(err error, comp compression) error {
	if comp != compNone && !errors.Is(err, tar.ErrHeader) {
		return fmt.Errorf("%w: %s: %w", ErrCorruptCompression, comp, err)
	}
	return fmt.Errorf("%w: %w", ErrCorruptTar, err)
}
