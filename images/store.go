// Package images is pictl's image store: it imports Raspberry Pi OS disk
// images (.img, .img.xz/.gz/.zst), root directories and tar archives
// without mounting anything, prepares them for netboot, records their
// metadata and runs commands inside them.
//
// Layout under Store.Dir (normally <state_dir>/images):
//
//	<name>/boot        the boot directory tftpd serves (Pi firmware, or vmlinuz + initrd.img)
//	<name>/root        the root tree nfsd serves read-only to every node on the image
//	<name>/image.json  Meta
//	.staging-<name>-*  an import in progress (never listed; removed on failure)
//	.lock-<name>       flock: shared while exec runs, exclusive for import/remove
package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Store holds imported images in Dir.
type Store struct {
	// Dir is the store directory, e.g. <state_dir>/images.
	Dir string
	Log *slog.Logger
	// InUse, when set, names the nodes using an image; Remove refuses
	// with *InUseError while it returns any. The CLI and the controller
	// set it from cluster.yaml.
	InUse func(image string) []string
}

// ImportOptions tune Import.
type ImportOptions struct {
	// Progress receives reports while the import runs (ProgressPrinter
	// renders them); nil for none.
	Progress func(Progress)
	// NoPrepare skips netboot preparation (Prepare can run it later).
	NoPrepare bool
	// NoTool decompresses in Go even when the xz/zstd tools are present.
	NoTool bool
	// Workers copying file contents in parallel; 0 means GOMAXPROCS.
	Workers int
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidName reports whether name can name an image.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use 1-63 of a-z 0-9 . _ - starting with a letter or digit", ErrBadName, name)
	}
	return nil
}

func (s *Store) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Path returns the directory of an image (whether or not it exists).
func (s *Store) Path(name string) string { return filepath.Join(s.Dir, name) }

// RootDir and BootDir return where an image's trees are.
func (s *Store) RootDir(name string) string { return filepath.Join(s.Dir, name, "root") }
func (s *Store) BootDir(name string) string { return filepath.Join(s.Dir, name, "boot") }

// lock takes the image's lock file; how is unix.LOCK_SH or LOCK_EX.
func (s *Store) lock(name string, how int) (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, ".lock-"+name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (an exec, import or removal is running)", ErrBusy, name)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Import reads source (a disk image file, possibly compressed; a
// directory; or a tar archive, possibly compressed) into a new image.
// The work is staged in a hidden directory renamed into place at the end:
// a failed or cancelled import leaves nothing behind.
func (s *Store) Import(ctx context.Context, name, source string, opt ImportOptions) (*Meta, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(source)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("image source: %w", err)
	}
	unlock, err := s.lock(name, unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Lstat(s.Path(name)); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, name)
	}
	s.cleanStaging(name)
	staging := filepath.Join(s.Dir, ".staging-"+name+"-"+randHex())
	if err := os.Mkdir(staging, 0o700); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			if err := os.RemoveAll(staging); err != nil {
				s.log().Error("cannot remove failed import", "image", name, "dir", staging, "err", err)
			}
		}
	}()
	m := &Meta{Name: name, Source: abs, Imported: time.Now().UTC(),
		RootDir: filepath.Join(staging, "root"), BootDir: filepath.Join(staging, "boot")}
	if err := os.Mkdir(m.BootDir, 0o755); err != nil {
		return nil, err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	log := s.log().With("image", name, "source", abs)
	start := time.Now()
	var stats *treeStats
	switch {
	case fi.IsDir():
		m.SourceKind = KindDir
		prog := newTracker(opt.Progress, name, "copy", 0)
		stats, err = importDir(ctx, abs, m.RootDir, workers, prog)
		prog.finish()
	default:
		kind, comp, derr := detectFile(abs)
		if derr != nil {
			return nil, derr
		}
		m.SourceKind = kind
		if kind == KindTar {
			prog := newTracker(opt.Progress, name, "tar", fi.Size())
			stats, err = importTar(ctx, abs, comp, m.RootDir, workers, prog)
			prog.finish()
			break
		}
		stats, err = s.importDiskFile(ctx, abs, comp, staging, m, workers, opt, fi.Size())
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("import %s cancelled: %w", name, context.Cause(ctx))
		}
		return nil, fmt.Errorf("import %s from %s: %w", name, abs, err)
	}
	m.Files, m.Size = stats.Files-1, stats.Bytes // the root directory is no file
	log.Info("image imported", "kind", m.SourceKind, "files", m.Files, "bytes", m.Size, "took", time.Since(start).Round(time.Millisecond))
	if err := collectMeta(m, m.RootDir); err != nil {
		return nil, fmt.Errorf("import %s: metadata: %w", name, err)
	}
	if !opt.NoPrepare {
		if err := prepare(m); err != nil {
			return nil, fmt.Errorf("import %s: %w", name, err)
		}
	}
	m.Updated = time.Now().UTC()
	if err := writeMeta(staging, m); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("import %s cancelled: %w", name, context.Cause(ctx))
	}
	if err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, s.Path(name), unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("%w: %s", ErrExists, name)
		}
		return nil, fmt.Errorf("move import into place: %w", err)
	}
	ok = true
	return s.Get(name)
}

func (s *Store) importDiskFile(ctx context.Context, src string, comp compression, staging string, m *Meta, workers int, opt ImportOptions, srcSize int64) (*treeStats, error) {
	imgPath := src
	if comp != compNone {
		imgPath = filepath.Join(staging, "source.img")
		f, err := os.OpenFile(imgPath, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		prog := newTracker(opt.Progress, m.Name, "decompress", srcSize)
		err = decompressToFile(ctx, src, comp, f, !opt.NoTool, prog)
		prog.finish()
		f.Close()
		defer os.Remove(imgPath)
		if err != nil {
			return nil, err
		}
	}
	img, err := os.Open(imgPath)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	prog := newTracker(opt.Progress, m.Name, "extract", usedBytesHint(img))
	defer prog.finish()
	return importDisk(ctx, img, m.RootDir, m.BootDir, workers, prog)
}

// usedBytesHint estimates the content to copy for the progress total: the
// allocated size of the (sparse) image file.
func usedBytesHint(f *os.File) int64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// cleanStaging removes stagings left by imports that were killed: their
// lock is no longer held. held is the image whose lock the caller has.
func (s *Store) cleanStaging(held string) {
	ents, _ := os.ReadDir(s.Dir)
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, ".staging-") && !strings.HasPrefix(n, ".trash-") {
			continue
		}
		img := strings.TrimPrefix(strings.TrimPrefix(n, ".staging-"), ".trash-")
		if i := strings.LastIndex(img, "-"); i > 0 {
			img = img[:i]
		}
		unlock := func() {}
		if img != held {
			var err error
			if unlock, err = s.lock(img, unix.LOCK_EX); err != nil {
				continue // that import is running
			}
		}
		s.log().Warn("removing leftover of an interrupted import", "dir", n)
		os.RemoveAll(filepath.Join(s.Dir, n))
		unlock()
	}
}

func randHex() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeMeta(dir string, m *Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "image.json.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "image.json"))
}

// Get loads an image's metadata.
func (s *Store) Get(name string) (*Meta, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.Path(name), "image.json"))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	m := &Meta{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("image %s: image.json: %w", name, err)
	}
	m.Name = name
	m.RootDir, m.BootDir = s.RootDir(name), s.BootDir(name)
	return m, nil
}

// List returns every image, sorted by name.
func (s *Store) List() ([]*Meta, error) {
	ents, err := os.ReadDir(s.Dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Meta
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		m, err := s.Get(e.Name())
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadName) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Meta) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Remove deletes an image. It refuses with *InUseError while InUse names
// nodes, and with ErrBusy while an exec runs in it. The image disappears
// from List at once (renamed away) before its files are deleted.
func (s *Store) Remove(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if s.InUse != nil {
		if nodes := s.InUse(name); len(nodes) > 0 {
			return &InUseError{Image: name, Nodes: nodes}
		}
	}
	unlock, err := s.lock(name, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(s.Path(name), "image.json")); err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	trash := filepath.Join(s.Dir, ".trash-"+name+"-"+randHex())
	if err := os.Rename(s.Path(name), trash); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	s.log().Info("image removed", "image", name)
	return nil
}

// Prepare (re)applies netboot preparation and refreshes the metadata
// read from the tree (arch, OS release, kernels, packages, size). Exec
// calls it after every command, so packages installed later are
// prepared too.
func (s *Store) Prepare(name string) (*Meta, error) {
	unlock, err := s.lock(name, unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.refresh(name)
}

func (s *Store) refresh(name string) (*Meta, error) {
	m, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	if err := collectMeta(m, m.RootDir); err != nil {
		return nil, err
	}
	if err := prepare(m); err != nil {
		return nil, err
	}
	size, files, err := countTree(m.RootDir)
	if err != nil {
		return nil, err
	}
	m.Size, m.Files = size, files
	m.Updated = time.Now().UTC()
	return m, writeMeta(s.Path(name), m)
}
