package controller

import (
	"log/slog"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pictl/pictl/images"
)

// OpenRuntimeDB opens the state directory's runtime database (leases, boot
// stages, discovered clients, nfsd's records), waiting at most a second for
// a process that holds it: bbolt.ErrTimeout then means a controller (or
// another command) has it open. It returns the path for error messages.
func OpenRuntimeDB(stateDir string) (*bbolt.DB, string, error) {
	path := filepath.Join(stateDir, "runtime.db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	return db, path, err
}

// imageStore is the state directory's image store.
func imageStore(stateDir string, log *slog.Logger) *images.Store {
	return &images.Store{Dir: filepath.Join(stateDir, "images"), Log: log}
}
