package ext4

import (
	"encoding/binary"
	"fmt"
)

const xattrMagic = 0xEA020000

var xattrPrefixes = map[byte]string{
	1: "user.",
	2: "system.posix_acl_access",
	3: "system.posix_acl_default",
	4: "trusted.",
	6: "security.",
	7: "system.",
	8: "system.richacl",
}

// Xattrs returns a file's extended attributes by their full names, with
// POSIX ACLs converted to the format setxattr(2) takes. The inline-data
// attribute system.data is internal and left out.
func (fs *FS) Xattrs(i *Inode) (map[string][]byte, error) {
	x, err := fs.inodeXattrs(i)
	if err != nil {
		return nil, err
	}
	if i.fileACL != 0 {
		if i.fileACL >= fs.blocksCount {
			return nil, corrupt("inode %d: xattr block %d beyond the end", i.Num, i.fileACL)
		}
		buf := make([]byte, fs.BlockSize)
		if err := fs.readBlock(i.fileACL, buf); err != nil {
			return nil, fmt.Errorf("inode %d: xattr block: %w", i.Num, err)
		}
		if binary.LittleEndian.Uint32(buf) != xattrMagic {
			return nil, corrupt("inode %d: xattr block without magic", i.Num)
		}
		if x == nil {
			x = map[string][]byte{}
		}
		if err := parseXattrs(i.Num, buf[32:], buf, x); err != nil {
			return nil, err
		}
	}
	delete(x, "system.data")
	for name, v := range x {
		if name == "system.posix_acl_access" || name == "system.posix_acl_default" {
			conv, err := aclToXattr(v)
			if err != nil {
				return nil, fmt.Errorf("inode %d: %s: %w", i.Num, name, err)
			}
			x[name] = conv
		}
	}
	if len(x) == 0 {
		return nil, nil
	}
	return x, nil
}

// inodeXattrs reads the attributes stored after the inode's extra fields.
func (fs *FS) inodeXattrs(i *Inode) (map[string][]byte, error) {
	start := i.extraIsize()
	if len(i.extra) < start+4 || binary.LittleEndian.Uint32(i.extra[start:]) != xattrMagic {
		return map[string][]byte{}, nil
	}
	area := i.extra[start+4:]
	x := map[string][]byte{}
	if err := parseXattrs(i.Num, area, area, x); err != nil {
		return nil, err
	}
	return x, nil
}

// parseXattrs decodes entries; value offsets are relative to valueBase.
func parseXattrs(ino uint32, entries, valueBase []byte, into map[string][]byte) error {
	le := binary.LittleEndian
	for p := 0; p+16 <= len(entries); {
		if le.Uint32(entries[p:]) == 0 {
			return nil
		}
		nameLen := int(entries[p])
		index := entries[p+1]
		voff := int(le.Uint16(entries[p+2:]))
		vinum := le.Uint32(entries[p+4:])
		vsize := int(le.Uint32(entries[p+8:]))
		if p+16+nameLen > len(entries) {
			return corrupt("inode %d: xattr name past the end", ino)
		}
		if vinum != 0 {
			return &UnsupportedFeatureError{Feature: "ea_inode"}
		}
		if voff+vsize > len(valueBase) || vsize < 0 {
			return corrupt("inode %d: xattr value at %d+%d past the end", ino, voff, vsize)
		}
		prefix, ok := xattrPrefixes[index]
		name := string(entries[p+16 : p+16+nameLen])
		if ok {
			into[prefix+name] = append([]byte(nil), valueBase[voff:voff+vsize]...)
		}
		p += (16 + nameLen + 3) &^ 3
	}
	return nil
}

// aclToXattr converts ext4's compact ACL (version 1, short entries for the
// owner/group/mask/other tags) to the VFS format (version 2, 8-byte entries).
func aclToXattr(b []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(b) < 4 || le.Uint32(b) != 1 {
		return nil, fmt.Errorf("%w: ACL header", ErrCorrupt)
	}
	out := le.AppendUint32(nil, 2)
	for p := 4; p < len(b); {
		if p+4 > len(b) {
			return nil, fmt.Errorf("%w: short ACL entry", ErrCorrupt)
		}
		tag := le.Uint16(b[p:])
		perm := le.Uint16(b[p+2:])
		id := uint32(0xFFFFFFFF)
		switch tag {
		case 0x02, 0x08: // ACL_USER, ACL_GROUP carry an id
			if p+8 > len(b) {
				return nil, fmt.Errorf("%w: short ACL entry", ErrCorrupt)
			}
			id = le.Uint32(b[p+4:])
			p += 8
		default:
			p += 4
		}
		out = le.AppendUint16(out, tag)
		out = le.AppendUint16(out, perm)
		out = le.AppendUint32(out, id)
	}
	return out, nil
}
