package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/cluster"
)

type change struct {
	c   *cluster.Cluster
	err error
}

// watcher runs s.Watch until the test ends and hands out its callbacks.
func watcher(t *testing.T, s *Store) <-chan change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan change, 16)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, func(c *cluster.Cluster, err error) { ch <- change{c, err} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v after cancel, want nil", err)
		}
	})
	// Watch has registered its inotify watch once it answers a change
	// that happens after it started; the tests wait for their first
	// change instead of sleeping.
	return ch
}

// next waits for the next callback. The timeout only turns a hang into a
// failure; it is not a speed requirement.
func next(t *testing.T, ch <-chan change) change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("no change reported")
	}
	return change{}
}

func roleOf(t *testing.T, c change) string {
	t.Helper()
	if c.err != nil {
		t.Fatalf("unexpected error: %v", c.err)
	}
	return c.c.Nodes["pi1"].Role
}

// waitRole waits for a callback with pi1's role. A write in place is a
// truncate and a write: if the machine is slow enough for the watcher to
// read between the two, it reports the empty file as invalid first; such
// error callbacks are skipped here, a wrong valid state is not.
func waitRole(t *testing.T, ch <-chan change, want string) {
	t.Helper()
	for {
		c := next(t, ch)
		if c.err != nil {
			t.Logf("skipping a transient error: %v", c.err)
			continue
		}
		if got := c.c.Nodes["pi1"].Role; got != want {
			t.Fatalf("role %q, want %q", got, want)
		}
		return
	}
}

func withRole(role string) string {
	return strings.Replace(baseYAML, "role: web", "role: "+role, 1)
}

func TestWatch(t *testing.T) {
	s := newStore(t, baseYAML)
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	ch := watcher(t, s)
	dir := filepath.Dir(s.Path())

	// The first write may race with Watch adding its inotify watch; the
	// 2 s poll catches it then, so this still ends in a callback.
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(s.Path(), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Edit in place (truncate and write, like echo >).
	write(withRole("db"))
	waitRole(t, ch, "db")

	// 2. Replace by rename, like most editors and pictl itself.
	tmp := filepath.Join(dir, "cluster.yaml.swp")
	if err := os.WriteFile(tmp, []byte(withRole("lb")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.Path()); err != nil {
		t.Fatal(err)
	}
	if got := roleOf(t, next(t, ch)); got != "lb" {
		t.Fatalf("rename: role %q", got)
	}

	// 3. Through Update.
	if _, err := s.Update(func(d *cluster.Document) error { return d.Set("router", "nodes", "pi1", "role") }); err != nil {
		t.Fatal(err)
	}
	if got := roleOf(t, next(t, ch)); got != "router" {
		t.Fatalf("Update: role %q", got)
	}

	// 4. Invalid content: the error, with file:line:column (an empty
	// file seen halfway through the write would be reported at 1:1).
	write(withRole("chef"))
	for {
		c := next(t, ch)
		var list cluster.ErrorList
		if c.c != nil || !errors.As(c.err, &list) {
			t.Fatalf("invalid file: %+v", c)
		}
		if strings.Contains(c.err.Error(), s.Path()+":9:") {
			break
		}
	}

	// 5. Rewriting the same bytes, or touching the file, reports
	// nothing: the next callback is the next real change.
	write(withRole("chef"))
	now := time.Now()
	os.Chtimes(s.Path(), now, now)
	write(withRole("web"))
	waitRole(t, ch, "web")

	// 6. Removed: an error that says so; back: the new state.
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.c != nil || !errors.Is(c.err, fs.ErrNotExist) {
		t.Fatalf("removed file: %+v", c)
	}
	write(withRole("db"))
	waitRole(t, ch, "db")
}

// A change between Load and Watch is reported as soon as Watch starts.
func TestWatchSeesChangeSinceLoad(t *testing.T) {
	s := newStore(t, baseYAML)
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(), []byte(withRole("lb")), 0o644); err != nil {
		t.Fatal(err)
	}
	ch := watcher(t, s)
	if got := roleOf(t, next(t, ch)); got != "lb" {
		t.Fatalf("role %q", got)
	}
}

func TestWatchStopsOnCancel(t *testing.T) {
	s := newStore(t, baseYAML)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Watch(ctx, func(*cluster.Cluster, error) {}); err != nil {
		t.Errorf("Watch = %v, want nil", err)
	}
	if err := New(filepath.Join(t.TempDir(), "no", "such", "dir", "cluster.yaml")).Watch(context.Background(), func(*cluster.Cluster, error) {}); err == nil {
		t.Error("Watch of a missing directory: no error")
	}
}
