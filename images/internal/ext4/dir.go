package ext4

import (
	"encoding/binary"
	"strings"
)

// DirEntry is one name in a directory ("." and ".." are left out).
type DirEntry struct {
	Name string
	Ino  uint32
}

// maxDirSize bounds the directory bytes read into memory at once.
const maxDirSize = 256 << 20

// ReadDir lists a directory. Hashed (htree) directories are read linearly:
// their index blocks look like empty entries and are skipped.
func (fs *FS) ReadDir(i *Inode) ([]DirEntry, error) {
	if !i.IsDir() {
		return nil, corrupt("inode %d is not a directory", i.Num)
	}
	data, err := fs.ReadAll(i, maxDirSize)
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	if i.Flags&flagInlineData != 0 {
		// The first four bytes are the parent's inode number; entries
		// follow in i_block and continue in the system.data attribute,
		// each area ending on its own.
		if len(data) < 4 {
			return nil, corrupt("inode %d: inline directory of %d bytes", i.Num, len(data))
		}
		first := data[4:min(len(data), 60)]
		if err := fs.parseDirBlock(i.Num, first, &out); err != nil {
			return nil, err
		}
		if len(data) > 60 {
			if err := fs.parseDirBlock(i.Num, data[60:], &out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	for off := int64(0); off < int64(len(data)); off += fs.BlockSize {
		end := min(off+fs.BlockSize, int64(len(data)))
		if err := fs.parseDirBlock(i.Num, data[off:end], &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (fs *FS) parseDirBlock(dir uint32, b []byte, out *[]DirEntry) error {
	le := binary.LittleEndian
	for p := 0; p+8 <= len(b); {
		ino := le.Uint32(b[p:])
		rec := int(le.Uint16(b[p+4:]))
		if rec == 0 || rec == 65535 {
			if fs.BlockSize >= 65536 {
				rec = int(fs.BlockSize)
			}
		} else if fs.BlockSize >= 65536 {
			rec = rec&65532 | (rec&3)<<16
		}
		nameLen := int(b[p+6])
		if !fs.hasFiletypeInDE {
			nameLen |= int(b[p+7]) << 8
		}
		if rec < 8 || p+rec > len(b) || 8+nameLen > rec {
			return corrupt("directory inode %d: entry at byte %d has length %d", dir, p, rec)
		}
		if ino != 0 && nameLen > 0 {
			name := string(b[p+8 : p+8+nameLen])
			if name != "." && name != ".." {
				if strings.ContainsAny(name, "/\x00") {
					return corrupt("directory inode %d: name %q", dir, name)
				}
				*out = append(*out, DirEntry{Name: name, Ino: ino})
			}
		}
		p += rec
	}
	return nil
}
