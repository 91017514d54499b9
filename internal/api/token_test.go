package api

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateToken(t *testing.T) {
	path := TokenFile(filepath.Join(t.TempDir(), "state"))
	if _, err := ReadToken(path); !errors.Is(err, ErrNoToken) {
		t.Fatalf("ReadToken before creation: %v", err)
	}
	tok, created, err := LoadOrCreateToken(path)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("first start: %q %v %v", tok, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", fi.Mode(), err)
	}
	again, created, err := LoadOrCreateToken(path)
	if err != nil || created || again != tok {
		t.Fatalf("second start: %q %v %v, want the same token", again, created, err)
	}
	if got, err := ReadToken(path); err != nil || got != tok {
		t.Fatalf("ReadToken: %q %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("left in the state dir: %v", entries)
	}
	other, _, _ := LoadOrCreateToken(TokenFile(t.TempDir()))
	if other == tok {
		t.Error("two state directories got the same token")
	}

	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, _, err := LoadOrCreateToken(path); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged token file: %v", err)
	}
}
