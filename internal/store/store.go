// Package store keeps cluster.yaml on disk: it reads it, edits it under an
// exclusive lock with atomic replacement (so concurrent pictl commands
// never lose an update or leave a torn file), and watches it for changes.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/pictl/pictl/internal/cluster"
)

// DefaultConfigPath is where cluster.yaml lives unless told otherwise.
const DefaultConfigPath = "/etc/pictl/cluster.yaml"

// ConfigEnv names the environment variable that overrides the default path.
const ConfigEnv = "PICTL_CONFIG"

// ConfigPath picks cluster.yaml's path: the --config flag, else
// $PICTL_CONFIG, else /etc/pictl/cluster.yaml.
func ConfigPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv(ConfigEnv); env != "" {
		return env
	}
	return DefaultConfigPath
}

// Store is one cluster.yaml on disk. Its methods are safe for concurrent
// use, within a process and across processes.
type Store struct {
	path string

	// beforeRename, when set (tests only), runs after the new content is
	// written and synced to the temp file and before the rename.
	beforeRename func(tmp string)

	mu         sync.Mutex
	lastLoaded []byte // content the last Load returned, for Watch
	loadedOnce bool
}

// New returns the store for the cluster.yaml at path.
func New(path string) *Store { return &Store{path: path} }

// Path is cluster.yaml's path as given.
func (s *Store) Path() string { return s.path }

// Load reads and validates cluster.yaml. A missing file is an error that
// satisfies errors.Is(err, fs.ErrNotExist) and says to run pictl init;
// an invalid one is a cluster.ErrorList naming the file.
func (s *Store) Load() (*cluster.Cluster, error) {
	data, err := s.read()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.lastLoaded, s.loadedOnce = data, true
	s.mu.Unlock()
	return cluster.Load(s.path, data)
}

// Document reads cluster.yaml for editing without taking the lock; to
// change the file use Update.
func (s *Store) Document() (*cluster.Document, error) {
	data, err := s.read()
	if err != nil {
		return nil, err
	}
	return cluster.ParseDocument(s.path, data)
}

func (s *Store) read() ([]byte, error) {
	data, err := cluster.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &missingError{path: s.path, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	return data, nil
}

// missingError is a cluster.yaml that does not exist yet.
type missingError struct {
	path string
	err  error
}

func (e *missingError) Error() string {
	return fmt.Sprintf("%s does not exist: create it with pictl init, or point --config or $%s at your cluster.yaml", e.path, ConfigEnv)
}
func (e *missingError) Unwrap() error  { return e.err }
func (e *missingError) NotFound() bool { return true }

// ExistsError is Create refusing to overwrite a cluster.yaml.
type ExistsError struct{ Path string }

func (e *ExistsError) Error() string {
	return fmt.Sprintf("%s already exists; pictl init does not overwrite it (edit it, or remove it first)", e.Path)
}

// Exists marks the error behaviourally; errors.Is(err, fs.ErrExist) holds too.
func (e *ExistsError) Exists() bool         { return true }
func (e *ExistsError) Is(target error) bool { return target == fs.ErrExist }

// Create writes a new cluster.yaml (mode 0644, creating its directory) and
// refuses to replace an existing one. data must be a valid cluster.yaml.
func (s *Store) Create(data []byte) error {
	if _, err := cluster.Load(s.path, data); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", s.path, err)
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Lstat(s.path); err == nil {
		return &ExistsError{Path: s.path}
	}
	return s.writeAtomic(s.path, data, 0o644, nil, true)
}

// same reports whether a and b hold the same bytes (nil and empty alike).
func same(a, b []byte) bool { return bytes.Equal(a, b) }
