// Package imagestest provides test fixtures for code that needs a real
// root filesystem: a Debian bookworm minbase tree made by debootstrap,
// cached as a tar archive so it is built once per machine (shared with the
// e2e tests, see internal/testcache).
package imagestest

import (
	"context"
	"testing"

	"github.com/pictl/pictl/internal/testcache"
)

// CacheEnv overrides the image fixtures' cache directory (default
// <repo>/.cache/images).
const CacheEnv = "PICTL_IMAGES_CACHE"

// CacheDir returns the directory for image fixtures built from the Debian
// tree, such as the benchmark's disk image.
func CacheDir() string { return testcache.Dir("images", CacheEnv) }

// DebootstrapTar returns the path of a tar archive (numeric owners,
// xattrs) of a debootstrapped Debian bookworm for the host's architecture,
// building it on first use from the mirror apt uses. It skips the test when
// debootstrap is missing or the mirror is unreachable.
func DebootstrapTar(t testing.TB) string {
	t.Helper()
	p, err := EnsureDebootstrapTar()
	if err != nil {
		t.Skipf("debootstrap fixture unavailable: %v", err)
	}
	return p
}

// EnsureDebootstrapTar builds the cached archive if needed and returns its
// path.
func EnsureDebootstrapTar() (string, error) {
	return testcache.DebianTar(context.Background(), func(string, ...any) {})
}
