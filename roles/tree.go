package roles

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// File is one entry of a rendered tree. Paths are slash-separated,
// relative to the node's root, with no leading slash ("etc/hostname").
// Directories are implied by paths.
type File struct {
	Path string
	// Mode holds the permission bits, plus fs.ModeSymlink for a symlink
	// (Data is its target), or fs.ModeCharDevice|fs.ModeDevice with empty
	// Data for an overlay whiteout (a 0:0 character device).
	Mode fs.FileMode
	Data []byte
}

// whiteoutMode marks a File that hides the image's file of that path.
const whiteoutMode = fs.ModeCharDevice | fs.ModeDevice

// IsWhiteout reports whether f hides the lower layers' file at its path.
func (f File) IsWhiteout() bool { return f.Mode&whiteoutMode == whiteoutMode }

// IsSymlink reports whether f is a symbolic link to string(f.Data).
func (f File) IsSymlink() bool { return f.Mode&fs.ModeSymlink != 0 }

// Tree is a rendered role layer: sorted by Path, paths unique.
type Tree struct{ Files []File }

// File returns the entry at p.
func (t *Tree) File(p string) (File, bool) {
	i, ok := slices.BinarySearchFunc(t.Files, p, func(f File, p string) int { return strings.Compare(f.Path, p) })
	if !ok {
		return File{}, false
	}
	return t.Files[i], true
}

// treeHashVersion changes whenever the canonical encoding does, so a hash
// never names two different encodings.
const treeHashVersion = "pictl-role-tree-v1\x00"

// Hash is the hex SHA-256 of the tree's canonical encoding (each file's
// path, mode and data, length-prefixed, in path order): the same tree
// always hashes the same, and a controller can name its layer directory
// after it.
func (t *Tree) Hash() string {
	h := sha256.New()
	h.Write([]byte(treeHashVersion))
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, f := range t.Files {
		field([]byte(f.Path))
		binary.BigEndian.PutUint32(n[:4], uint32(f.Mode))
		h.Write(n[:4])
		field(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkPath accepts the paths a tree may hold: relative, clean, inside the
// root.
func checkPath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q starts with /", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (write %s)", p, path.Clean(p))
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("path %q leaves the root", p)
	case strings.ContainsAny(p, "\x00\n"):
		return fmt.Errorf("path %q has a NUL or newline", p)
	}
	return nil
}

// treeBuilder collects files, refusing a path given twice (two parts of a
// role that want the same file are a mistake in the role, not something
// to resolve silently).
type treeBuilder struct {
	files map[string]File
}

func newTreeBuilder() *treeBuilder { return &treeBuilder{files: map[string]File{}} }

func (b *treeBuilder) add(f File) error {
	if err := checkPath(f.Path); err != nil {
		return err
	}
	if _, dup := b.files[f.Path]; dup {
		return fmt.Errorf("%s is rendered twice", f.Path)
	}
	for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
		if _, clash := b.files[dir]; clash {
			return fmt.Errorf("%s is both a file and the directory of %s", dir, f.Path)
		}
	}
	prefix := f.Path + "/"
	for p := range b.files {
		if strings.HasPrefix(p, prefix) {
			return fmt.Errorf("%s is both a file and the directory of %s", f.Path, p)
		}
	}
	b.files[f.Path] = f
	return nil
}

func (b *treeBuilder) file(p string, mode fs.FileMode, data []byte) error {
	return b.add(File{Path: p, Mode: mode, Data: data})
}

func (b *treeBuilder) symlink(p, target string) error {
	return b.add(File{Path: p, Mode: fs.ModeSymlink | 0o777, Data: []byte(target)})
}

func (b *treeBuilder) whiteout(p string) error {
	return b.add(File{Path: p, Mode: whiteoutMode})
}

func (b *treeBuilder) tree() *Tree {
	t := &Tree{Files: make([]File, 0, len(b.files))}
	for _, f := range b.files {
		t.Files = append(t.Files, f)
	}
	sort.Slice(t.Files, func(i, j int) bool { return t.Files[i].Path < t.Files[j].Path })
	return t
}

// dirMode is the mode of the directories a tree implies.
const dirMode = 0o755

// WriteDir materialises the tree into dir, which must be empty or absent:
// regular files and directories with exact mode bits, symlinks, whiteouts
// as 0:0 character devices (making them needs CAP_MKNOD), and every mtime
// at the Unix epoch so that two materialisations of one tree are alike.
func (t *Tree) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("write role tree: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("write role tree: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("write role tree: %s is not empty", dir)
	}
	dirs := map[string]bool{".": true}
	for _, f := range t.Files {
		if err := checkPath(f.Path); err != nil {
			return fmt.Errorf("write role tree: %w", err)
		}
		for d := path.Dir(f.Path); !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	sortedDirs := make([]string, 0, len(dirs))
	for d := range dirs {
		sortedDirs = append(sortedDirs, d)
	}
	sort.Strings(sortedDirs) // a parent sorts before its children
	for _, d := range sortedDirs[1:] {
		if err := os.Mkdir(filepath.Join(dir, filepath.FromSlash(d)), dirMode); err != nil {
			return fmt.Errorf("write role tree: %w", err)
		}
	}
	for _, f := range t.Files {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f); err != nil {
			return fmt.Errorf("write role tree: %s: %w", f.Path, err)
		}
	}
	// Directories last, deepest first: writing a child changes its
	// parent's mtime.
	epoch := time.Unix(0, 0)
	for i := len(sortedDirs) - 1; i >= 0; i-- {
		p := filepath.Join(dir, filepath.FromSlash(sortedDirs[i]))
		if err := os.Chmod(p, dirMode); err != nil {
			return fmt.Errorf("write role tree: %w", err)
		}
		if err := os.Chtimes(p, epoch, epoch); err != nil {
			return fmt.Errorf("write role tree: %w", err)
		}
	}
	return nil
}

func writeFile(p string, f File) error {
	epoch := []unix.Timespec{{}, {}}
	switch {
	case f.IsSymlink():
		if err := os.Symlink(string(f.Data), p); err != nil {
			return err
		}
	case f.IsWhiteout():
		if len(f.Data) != 0 {
			return fmt.Errorf("whiteout with data")
		}
		if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("make whiteout: %w", err)
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, p, 0, 0); err != nil {
			return err
		}
	case f.Mode.IsRegular():
		if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			return err
		}
		// WriteFile's mode passes through the umask; set it exactly.
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported mode %v", f.Mode)
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, epoch, unix.AT_SYMLINK_NOFOLLOW)
}
