package controller

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The user's roles directory is followed like cluster.yaml: a file added
// in a new subdirectory, a file edited.
func TestWatchTree(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := filepath.Join(t.TempDir(), "roles")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	changes := make(chan struct{}, 16)
	done := make(chan error, 1)
	tw, err := newTreeWatch(dir)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- tw.run(ctx, func() { changes <- struct{}{} }) }()
	wait := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-time.After(30 * time.Second):
			t.Fatalf("no change seen after %s", what)
		}
	}
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"adding a role in a subdirectory", func() error {
			if err := os.Mkdir(filepath.Join(dir, "mon"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "mon", "role.yaml"), []byte("description: x\n"), 0o644)
		}},
		{"editing it", func() error {
			return os.WriteFile(filepath.Join(dir, "mon", "role.yaml"), []byte("description: monitoring\n"), 0o644)
		}},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		wait(step.what)
		for len(changes) > 0 { // one edit may be seen as two changes
			<-changes
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
