package nfsd

import (
	"os"

	"golang.org/x/sys/unix"
)

// openFile is the billy.File go-nfs reads and writes through. go-nfs
// answers every WRITE with FILE_SYNC and treats COMMIT as a no-op, so the
// promise is kept here (nfsd's own WRITE marks a file dirty only for a
// write it answers FILE_SYNC): a file that was written to is fdatasync'ed before
// Close returns (go-nfs closes it before replying).
type openFile struct {
	name  string // merged path: go-nfs's CREATE stats the file by Name()
	f     *os.File
	dirty bool
	sync  bool
}

func (o *openFile) Name() string { return o.name }

func (o *openFile) Read(p []byte) (int, error) { return o.f.Read(p) }

func (o *openFile) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }

func (o *openFile) Seek(off int64, whence int) (int64, error) { return o.f.Seek(off, whence) }

func (o *openFile) Write(p []byte) (int, error) {
	o.dirty = true
	return o.f.Write(p)
}

func (o *openFile) Truncate(size int64) error {
	o.dirty = true
	return o.f.Truncate(size)
}

func (o *openFile) Close() error {
	var syncErr error
	if o.dirty && o.sync {
		syncErr = unix.Fdatasync(int(o.f.Fd()))
	}
	err := o.f.Close()
	if syncErr != nil {
		return &os.PathError{Op: "fdatasync", Path: o.name, Err: syncErr}
	}
	return err
}

// Lock and Unlock: NFSv3 has no locks without NLM, which go-nfs lacks.
func (o *openFile) Lock() error   { return nil }
func (o *openFile) Unlock() error { return nil }
