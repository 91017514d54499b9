package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is where the API token lives in the state directory.
func TokenFile(stateDir string) string { return filepath.Join(stateDir, "api-token") }

// tokenBytes of randomness, written as hex: 256 bits, beyond guessing.
const tokenBytes = 32

// ErrNoToken: the token file does not exist yet (pictl serve creates it
// when it first starts with a TCP port for the API).
var ErrNoToken = errors.New("no API token yet")

// ReadToken reads the token file and checks it is one.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", path, ErrNoToken)
	}
	if err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if raw, err := hex.DecodeString(tok); err != nil || len(raw) != tokenBytes {
		return "", fmt.Errorf("api token file %s is damaged (want %d hex digits); delete it and restart pictl serve to make a new one", path, 2*tokenBytes)
	}
	return tok, nil
}

// LoadOrCreateToken returns the token in path, creating it (mode 0600)
// when there is none. created says the token is new, so the caller can
// tell the person once. The file appears complete or not at all: it is
// written under a temporary name and linked into place, and link refuses
// to replace a token a concurrent start just made.
func LoadOrCreateToken(path string) (token string, created bool, err error) {
	tok, err := ReadToken(path)
	if !errors.Is(err, ErrNoToken) {
		return tok, false, err
	}
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("api token: %w", err)
	}
	tok = hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return "", false, fmt.Errorf("api token: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".api-token-*")
	if err != nil {
		return "", false, fmt.Errorf("api token: %w", err)
	}
	defer os.Remove(f.Name())
	// CreateTemp makes the file 0600 already; say so for the reader.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", false, fmt.Errorf("api token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("api token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", false, fmt.Errorf("api token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("api token: %w", err)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		tok, err := ReadToken(path) // another start won the race
		return tok, false, err
	} else if err != nil {
		return "", false, fmt.Errorf("api token: %w", err)
	}
	return tok, true, nil
}
