package tftpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Errors a lookup ends with; none of their text reaches a client (see
// clientMessage).
var (
	// ErrNotFound: no such file for this node (or it is not a regular file).
	ErrNotFound = errors.New("file not found")
	// ErrDenied: the name resolves outside the boot root (an escaping
	// symlink), or the file cannot be opened.
	ErrDenied = errors.New("access denied")
	// ErrNetbootOff: the node exists but may not netboot.
	ErrNetbootOff = errors.New("netboot disabled for node")
)

// content is what a transfer sends.
type content struct {
	r     io.Reader
	size  int64
	close func() error
}

func bytesContent(b []byte) content {
	return content{r: bytes.NewReader(b), size: int64(len(b)), close: func() error { return nil }}
}

// bootFiles opens the files of a node's boot tree: rendered per-node files
// and, for everything else, files in the image's boot directory opened
// through os.Root so no name or symlink can reach outside it.
type bootFiles struct {
	cache *contentCache
}

func (b *bootFiles) open(t Target, nfs nfsTarget) (content, error) {
	n := t.Node
	if !n.Netboot {
		return content{}, ErrNetbootOff
	}
	switch {
	case n.Image.Kind == ImagePi && t.Path == CmdlineTxt:
		if !nfs.Server.IsValid() {
			return content{}, errNoServerAddr
		}
		img, _, err := b.readSmall(n.Image.BootDir, CmdlineTxt)
		if err != nil {
			return content{}, err
		}
		return bytesContent(renderCmdline(n, nfs, img)), nil
	case n.Image.Kind == ImagePi && t.Path == ConfigTxt:
		img, has, err := b.readSmall(n.Image.BootDir, ConfigTxt)
		if err != nil {
			return content{}, err
		}
		out, ok := renderConfigTxt(n, img, has)
		if !ok {
			return content{}, ErrNotFound
		}
		return bytesContent(out), nil
	case t.Path == BootIPXE:
		if n.Image.Kind != ImageKernelInitrd {
			return content{}, ErrNotFound
		}
		if !nfs.Server.IsValid() {
			return content{}, errNoServerAddr
		}
		script, err := renderIPXE(n, nfs)
		if err != nil {
			return content{}, err
		}
		return bytesContent(script), nil
	}
	return b.openFile(n.Image.BootDir, t.Path)
}

// readSmall reads an image file a rendered file is based on; a missing file
// is has=false, not an error.
func (b *bootFiles) readSmall(dir, name string) (data []byte, has bool, err error) {
	c, err := b.openFile(dir, name)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer c.close()
	if c.size > 1<<20 {
		return nil, false, fmt.Errorf("%s in image boot directory: %d bytes, too big to render", name, c.size)
	}
	data, err = io.ReadAll(c.r)
	return data, err == nil, err
}

func (b *bootFiles) openFile(dir, name string) (content, error) {
	if dir == "" {
		return content{}, ErrNotFound
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return content{}, fmt.Errorf("image boot directory: %w", err)
	}
	defer root.Close()
	// O_NONBLOCK: a FIFO planted in an image must not hang the transfer.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return content{}, ErrNotFound
	case err != nil:
		// Escaping symlinks, loops, permissions: the path error names host
		// paths, so only our own sentinel goes up.
		return content{}, fmt.Errorf("%w: %s", ErrDenied, rootErrReason(err))
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return content{}, ErrNotFound
	}
	data, cached, err := b.cache.contents(f, st)
	if err != nil {
		f.Close()
		return content{}, fmt.Errorf("read boot file: %w", err)
	}
	if cached {
		f.Close()
		return bytesContent(data), nil
	}
	return content{r: f, size: st.Size(), close: f.Close}, nil
}

// rootErrReason is the cause of an os.Root error without the host path it
// carries.
func rootErrReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return "open failed"
}
