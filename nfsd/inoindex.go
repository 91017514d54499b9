package nfsd

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// inoIndex maps the inode numbers of a lower tree (an image root, or a
// volume) to (parent inode, name), so a handle naming a lower file by inode
// can be turned back into a path after a restart. It is built by one walk of
// the tree the first time a handle misses every cache, and shared by every
// export over the same tree: 20 nodes on one image hold one index.
//
// The layout is pointer-free (one map of integers, one slice of fixed-size
// entries, one byte slice of names), about 40 bytes per file, so the GC
// never scans it.
type inoIndex struct {
	root string
	// rebuildAfter > 0 lets a miss trigger a new walk at most that often
	// (volumes change behind nfsd's back; images do not).
	rebuildAfter time.Duration

	mu      sync.RWMutex
	built   bool
	builtAt time.Time
	rootIno uint64
	dev     uint64
	slots   map[uint64]uint32
	ents    []indexEnt
	names   []byte
	// While a build walks the tree, put and remove are also logged here
	// and replayed on the new index: the walk may have passed a directory
	// before nfsd changed it, and the change must not be lost when the new
	// maps replace the old (a directory created during a rebuild would
	// otherwise be unknown until the next one: ESTALE).
	building bool
	log      []indexOp

	buildMu sync.Mutex
}

type indexOp struct {
	ino, parent uint64
	name        string
	remove      bool
}

type indexEnt struct {
	parent uint64
	off    uint32
	n      uint16
}

func newInoIndex(root string, rebuildAfter time.Duration) *inoIndex {
	return &inoIndex{root: root, rebuildAfter: rebuildAfter}
}

// lookup returns where inode ino lives; parent == rootIno means the top of
// the tree.
func (x *inoIndex) lookup(ino uint64) (parent uint64, name string, root uint64, err error) {
	if err := x.ensure(false); err != nil {
		return 0, "", 0, err
	}
	if p, n, r, ok := x.find(ino); ok {
		return p, n, r, nil
	}
	if x.rebuildAfter > 0 {
		if err := x.ensure(true); err != nil {
			return 0, "", 0, err
		}
		if p, n, r, ok := x.find(ino); ok {
			return p, n, r, nil
		}
	}
	return 0, "", 0, os.ErrNotExist
}

func (x *inoIndex) find(ino uint64) (uint64, string, uint64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.slots[ino]
	if !ok {
		return 0, "", 0, false
	}
	e := x.ents[i]
	return e.parent, string(x.names[e.off : e.off+uint32(e.n)]), x.rootIno, true
}

func (x *inoIndex) ensure(rebuild bool) error {
	x.mu.RLock()
	built, at := x.built, x.builtAt
	x.mu.RUnlock()
	if built && (!rebuild || time.Since(at) < x.rebuildAfter) {
		return nil
	}
	x.buildMu.Lock()
	defer x.buildMu.Unlock()
	x.mu.RLock()
	built2, at2 := x.built, x.builtAt
	x.mu.RUnlock()
	if built2 && (!rebuild || at2 != at) {
		return nil // someone else built it meanwhile
	}
	return x.build()
}

func (x *inoIndex) build() error {
	x.mu.Lock()
	x.building, x.log = true, nil
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.building, x.log = false, nil
		x.mu.Unlock()
	}()
	var rst unix.Stat_t
	if err := unix.Stat(x.root, &rst); err != nil {
		return fmt.Errorf("index %s: %w", x.root, err)
	}
	slots := make(map[uint64]uint32)
	var ents []indexEnt
	var names []byte
	type dir struct {
		host string
		ino  uint64
	}
	queue := []dir{{x.root, rst.Ino}}
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		f, err := hostOpenFile(d.host, os.O_RDONLY, 0)
		if err != nil {
			continue // unreadable subtree: its files just cannot be re-found
		}
		list, err := f.Readdirnames(-1)
		if err != nil && len(list) == 0 {
			f.Close()
			continue
		}
		fd := int(f.Fd())
		for _, name := range list {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue
			}
			if st.Dev != rst.Dev || len(name) > 0xffff {
				continue // another file system: inode numbers would be ambiguous
			}
			if _, dup := slots[st.Ino]; !dup { // hard links: the first name wins
				slots[st.Ino] = uint32(len(ents))
				ents = append(ents, indexEnt{parent: d.ino, off: uint32(len(names)), n: uint16(len(name))})
				names = append(names, name...)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				queue = append(queue, dir{d.host + "/" + name, st.Ino})
			}
		}
		f.Close()
	}
	x.mu.Lock()
	x.slots, x.ents, x.names = slots, ents, names
	x.rootIno, x.dev = rst.Ino, rst.Dev
	x.built, x.builtAt = true, time.Now()
	for _, op := range x.log {
		if op.remove {
			x.removeLocked(op.ino)
		} else {
			x.putLocked(op.ino, op.parent, op.name)
		}
	}
	x.mu.Unlock()
	return nil
}

// Updates for writable volumes, whose tree nfsd changes itself. They only
// touch a built index: an unbuilt one will see the change when it is built.

func (x *inoIndex) put(ino, parent uint64, name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.building {
		x.log = append(x.log, indexOp{ino: ino, parent: parent, name: name})
	}
	x.putLocked(ino, parent, name)
}

func (x *inoIndex) putLocked(ino, parent uint64, name string) {
	if !x.built || len(name) > 0xffff {
		return
	}
	e := indexEnt{parent: parent, off: uint32(len(x.names)), n: uint16(len(name))}
	x.names = append(x.names, name...)
	if i, ok := x.slots[ino]; ok {
		x.ents[i] = e
		return
	}
	x.slots[ino] = uint32(len(x.ents))
	x.ents = append(x.ents, e)
}

func (x *inoIndex) remove(ino uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.building {
		x.log = append(x.log, indexOp{ino: ino, remove: true})
	}
	x.removeLocked(ino)
}

func (x *inoIndex) removeLocked(ino uint64) {
	delete(x.slots, ino) // the entry's slot and name bytes are reclaimed at the next build
}

var errNoIndex = errors.New("nfsd: no lower index")

// indexRegistry shares one index per tree among exports.
type indexRegistry struct {
	mu sync.Mutex
	m  map[string]*inoIndex
}

func (r *indexRegistry) get(root string, rebuildAfter time.Duration) *inoIndex {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*inoIndex)
	}
	x := r.m[root]
	if x == nil {
		x = newInoIndex(root, rebuildAfter)
		r.m[root] = x
	}
	return x
}
