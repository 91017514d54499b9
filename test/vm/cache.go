package vm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/pictl/pictl/internal/testcache"
)

// CacheEnv names the environment variable that overrides the artefact cache
// directory (default <repo>/.cache/vm).
const CacheEnv = "PICTL_TEST_CACHE"

// defaultCacheDir is $PICTL_TEST_CACHE, else .cache/vm at the root of the
// module.
func defaultCacheDir() string { return testcache.Dir("vm", CacheEnv) }

// ensure makes sure path exists, building it at most once across concurrent
// processes: if path is missing it takes an exclusive flock on path+".lock",
// checks again, and calls build with a temporary path in the same directory
// that build must create (file or directory); the result is renamed to path
// only when build succeeded. A reader that sees path therefore always sees a
// complete artefact. Leftovers of builds killed half-way are removed under
// the lock. It reports whether it built.
func ensure(path string, build func(tmp string) error) (built bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("cache dir: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return false, fmt.Errorf("cache lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return false, fmt.Errorf("cache lock %s: %w", lock.Name(), err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck // closing releases it anyway
	if _, err := os.Stat(path); err == nil {
		return false, nil // another process built it while we waited
	}
	stale, _ := filepath.Glob(path + ".tmp-*")
	for _, s := range stale {
		_ = os.RemoveAll(s)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := fmt.Sprintf("%s.tmp-%d-%s", path, os.Getpid(), hex.EncodeToString(rnd[:]))
	if err := build(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return false, err
	}
	if _, err := os.Stat(tmp); errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("build of %s produced nothing", filepath.Base(path))
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.RemoveAll(tmp)
		return false, fmt.Errorf("publish %s: %w", path, err)
	}
	return true, nil
}
