package nfsd

import (
	"os"
	"time"

	"github.com/willscott/go-nfs/file"
	"golang.org/x/sys/unix"
)

// fileInfo is what go-nfs's ToFileAttribute reads. Two details matter:
//   - Mode carries the Unix setuid/setgid/sticky bits in bits 9-11, where
//     Go's os.FileMode has nothing: go-nfs sends uint32(Mode()) to the
//     client, which keeps the low 12 bits, so `ls -l /usr/bin/sudo` shows
//     the s. (Go's own ModeSetuid etc. live in high bits the wire drops.)
//   - Sys returns go-nfs's file.FileInfo with the stable identity as fileid
//     and the real owner, link count and device numbers.
type fileInfo struct {
	export uint32 // set on listings: readdir verifiers must differ between exports
	name   string
	mode   os.FileMode
	size   int64
	mtim   time.Time
	// atim and ctim: go-nfs sends mtime for all three times; nfsd's own
	// replies send these (fattrOf).
	atim, ctim unix.Timespec
	sys        file.FileInfo
}

func newFileInfo(name string, st *unix.Stat_t, id fileID, merged bool) *fileInfo {
	nlink := uint32(st.Nlink)
	if merged {
		nlink = 1
	}
	return &fileInfo{
		name: name,
		mode: goMode(st.Mode),
		size: st.Size,
		mtim: time.Unix(st.Mtim.Unix()),
		atim: st.Atim,
		ctim: st.Ctim,
		sys: file.FileInfo{
			Nlink:  nlink,
			UID:    st.Uid,
			GID:    st.Gid,
			Major:  unix.Major(st.Rdev),
			Minor:  unix.Minor(st.Rdev),
			Fileid: uint64(id),
		},
	}
}

func goMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o7777) // permission and setuid/setgid/sticky as on the wire
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	}
	return mode
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) Mode() os.FileMode  { return fi.mode }
func (fi *fileInfo) ModTime() time.Time { return fi.mtim }
func (fi *fileInfo) IsDir() bool        { return fi.mode&os.ModeDir != 0 }
func (fi *fileInfo) Sys() any           { return &fi.sys }
