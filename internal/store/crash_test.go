package store

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pictl/pictl/internal/cluster"
)

// TestCrashBeforeRename kills a writer (SIGKILL, no cleanup) after it has
// written and synced its temp file and before the rename: the old file
// must be intact, and the next update must work and sweep the temp file.
func TestCrashBeforeRename(t *testing.T) {
	s := newStore(t, baseYAML)
	dir := filepath.Dir(s.Path())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PICTL_STORE_HELPER=crash-before-rename", "PICTL_STORE_PATH="+s.Path())
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v, want it killed by SIGKILL", err)
	}

	got, _ := os.ReadFile(s.Path())
	if string(got) != baseYAML {
		t.Fatalf("cluster.yaml changed by the killed writer:\n%s", got)
	}
	temps, _ := filepath.Glob(filepath.Join(dir, ".cluster.yaml.tmp-*"))
	if len(temps) != 1 {
		t.Fatalf("temp files %v, want the killed writer's one (was the hook reached?)", temps)
	}
	if tmp, _ := os.ReadFile(temps[0]); !strings.Contains(string(tmp), "crashed") {
		t.Fatalf("temp file does not hold the new content:\n%s", tmp)
	}
	if _, err := s.Load(); err != nil {
		t.Fatalf("old file no longer loads: %v", err)
	}

	// The lock died with the process; the next writer proceeds.
	c, err := s.Update(func(d *cluster.Document) error { return d.Set("db", "nodes", "pi1", "role") })
	if err != nil {
		t.Fatal(err)
	}
	if c.Nodes["pi1"].Role != "db" || c.Nodes["crashed"] != nil {
		t.Errorf("state after recovery: %+v", c.Nodes)
	}
	assertNoTemp(t, dir)
}

// runCrasher is the helper: an update that SIGKILLs its own process
// between the temp file and the rename.
func runCrasher() int {
	s := New(os.Getenv("PICTL_STORE_PATH"))
	s.beforeRename = func(string) { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	s.Update(func(d *cluster.Document) error {
		return d.Set(map[string]any{"mac": "dc:a6:32:01:36:99", "role": "web"}, "nodes", "crashed")
	})
	return 3 // not reached
}
