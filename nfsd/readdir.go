package nfsd

import (
	"os"

	"golang.org/x/sys/unix"
)

// readDir lists a merged directory: every layer of its stack, top first,
// each name once (the topmost wins), whiteouts and what they hide left out.
// With limit > 0 it stops after that many entries (emptiness checks).
func (x *export) readDir(t *tree, dir *entry, limit int) ([]*entry, error) {
	var out []*entry
	var seen map[string]struct{}
	if len(dir.stack) > 1 {
		seen = make(map[string]struct{})
	}
	for i, d := range dir.stack {
		l := t.layers[d.layer]
		f, err := hostOpenFile(d.host, os.O_RDONLY, 0)
		if err != nil {
			if i == 0 {
				return nil, &os.PathError{Op: "readdir", Path: dir.path, Err: unwrapErrno(err)}
			}
			continue
		}
		names, err := f.Readdirnames(-1)
		if err != nil && len(names) == 0 && i == 0 {
			f.Close()
			return nil, &os.PathError{Op: "readdir", Path: dir.path, Err: unwrapErrno(err)}
		}
		fd := int(f.Fd())
		for _, name := range names {
			if seen != nil {
				if _, dup := seen[name]; dup {
					continue
				}
				seen[name] = struct{}{}
			}
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue
			}
			if l.overlaid() && isWhiteout(&st) {
				continue
			}
			p := joinPath(dir.path, name)
			var e *entry
			if st.Mode&unix.S_IFMT == unix.S_IFDIR && (i+1 < len(dir.stack) || l.kind == kindRole) {
				// A directory may merge with lower ones: resolve it fully.
				e, err = lookupChild(t, dir.stack[i:], name, p)
				if err != nil {
					continue
				}
			} else {
				e = &entry{path: p, layer: d.layer, host: d.host + "/" + name, st: st, parent: dir.stack, pos: i}
				if st.Mode&unix.S_IFMT == unix.S_IFDIR {
					e.stack = []dirRef{{layer: d.layer, host: e.host}}
				}
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				f.Close()
				return out, nil
			}
		}
		f.Close()
	}
	return out, nil
}

func (x *export) mergedEmpty(t *tree, dir *entry) (bool, error) {
	list, err := x.readDir(t, dir, 1)
	if err != nil {
		return false, err
	}
	return len(list) == 0, nil
}

func unwrapErrno(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
