package nfsd

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Handle layout (32 bytes, under NFSv3's 64):
//
//	[0]      version
//	[1:4]    zero (reserved)
//	[4:8]    export number (persistent, see store.exportNumber)
//	[8:16]   fileID
//	[16:32]  HMAC-SHA256(key, bytes 0..15), truncated to 128 bits
//
// The length must be a multiple of 4: go-nfs reads handles with an XDR
// decoder that skips no padding, so a 29-byte handle would shift every
// argument after it (GO_NFS_DEFECTS.md).
// The MAC makes handles unforgeable: a client can only use handles the
// server gave it (go-nfs shows the client's address only at MOUNT, so the
// handle itself must carry the authority). The key lives in the state
// directory so handles stay valid across restarts.
const (
	handleVersion = 1
	handleMACLen  = 16
	handleBodyLen = 16
	handleLen     = handleBodyLen + handleMACLen
	handleKeyLen  = 32
)

var errBadHandle = errors.New("nfsd: malformed or forged file handle")

type handleCodec struct {
	key  []byte
	macs sync.Pool
}

func newHandleCodec(key []byte) *handleCodec {
	c := &handleCodec{key: append([]byte(nil), key...)}
	c.macs.New = func() any { return hmac.New(sha256.New, c.key) }
	return c
}

func (c *handleCodec) mac(body []byte, out []byte) []byte {
	m := c.macs.Get().(hash.Hash)
	m.Reset()
	_, _ = m.Write(body)
	out = m.Sum(out)
	c.macs.Put(m)
	return out
}

func (c *handleCodec) encode(export uint32, id fileID) []byte {
	b := make([]byte, handleBodyLen, handleBodyLen+sha256.Size)
	b[0] = handleVersion
	binary.BigEndian.PutUint32(b[4:8], export)
	binary.BigEndian.PutUint64(b[8:16], uint64(id))
	b = c.mac(b[:handleBodyLen], b)
	return b[:handleLen]
}

// decode checks the MAC before trusting any field.
func (c *handleCodec) decode(fh []byte) (uint32, fileID, error) {
	if len(fh) != handleLen || fh[0] != handleVersion || fh[1]|fh[2]|fh[3] != 0 {
		return 0, 0, errBadHandle
	}
	var sum [sha256.Size]byte
	want := c.mac(fh[:handleBodyLen], sum[:0])
	if !hmac.Equal(want[:handleMACLen], fh[handleBodyLen:]) {
		return 0, 0, errBadHandle
	}
	return binary.BigEndian.Uint32(fh[4:8]), fileID(binary.BigEndian.Uint64(fh[8:16])), nil
}

// loadOrCreateKey returns the handle key stored at path, creating it (with
// fsync of file and directory, so a crash cannot leave an empty key behind a
// running client's handles) on first use.
func loadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != handleKeyLen {
			return nil, fmt.Errorf("handle key %s: want %d bytes, found %d", path, handleKeyLen, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read handle key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create handle key dir: %w", err)
	}
	key = make([]byte, handleKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate handle key: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write handle key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("write handle key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync handle key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write handle key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("install handle key: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return key, nil
}

func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// syncPath fsyncs a directory or regular file; for anything else (a
// whiteout, device, FIFO, symlink: nothing to open safely) its directory.
func syncPath(p string) error {
	var st unix.Stat_t
	if err := hostLstat(p, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFDIR && t != unix.S_IFREG {
		p = filepath.Dir(p)
	}
	fd, err := hostOpen(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return &os.PathError{Op: "fsync", Path: p, Err: err}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
