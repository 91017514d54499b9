package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/controller"
)

// Without a controller, node reset works on the state directory.
func TestNodeResetOffline(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	// Before the first pictl serve there are no node layers (init only
	// made the www volume): nothing to do.
	if _, err := os.Stat(filepath.Join(e.dir, "state", "nfsd")); !os.IsNotExist(err) {
		t.Fatalf("nfsd state before the first serve: %v", err)
	}
	e.ok("node", "reset", "pi3")
	file := filepath.Join(e.dir, "state", "nfsd", "nodes", "pi3", "root", "etc", "hostname")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("pi3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := e.ok("node", "reset", "pi3"); !strings.HasPrefix(got, "pi3: own layer discarded (controller not running") {
		t.Errorf("node reset printed %q", got)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the node's file survived: %v", err)
	}
	e.fails("no node named pi9", "node", "reset", "pi9")
	e.fails("expected one NAME", "node", "reset")
}

// fakeController answers the API like a running controller whose pi3 is
// mounted; resets go to the real controller's error types.
type fakeController struct{ resets []string }

func (f *fakeController) Status(context.Context) api.Status                    { return api.Status{} }
func (f *fakeController) Nodes(context.Context) ([]api.Node, error)            { return nil, nil }
func (f *fakeController) Discovered(context.Context) ([]api.Discovered, error) { return nil, nil }
func (f *fakeController) SwitchByReboot(context.Context, string) error         { return nil }

func (f *fakeController) ResetNode(_ context.Context, name string, force bool) error {
	switch {
	case name != "pi3":
		return &controller.UnknownNodeError{Name: name}
	case !force:
		return &controller.NodeInUseError{Name: name, Addr: "10.99.0.13"}
	}
	f.resets = append(f.resets, name)
	return nil
}

// With a controller running, node reset goes through the API and shows its
// refusal as one readable line.
func TestNodeResetThroughAPI(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	fc := &fakeController{}
	srv := api.NewServer(e.socket, fc, nil)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("api server did not stop")
		}
	}()

	_, err := e.run("node", "reset", "pi3")
	if want := "node reset pi3: node pi3 is mounted from 10.99.0.13; stop it or use --force"; err == nil || err.Error() != want {
		t.Errorf("reset of a mounted node: %v, want %q", err, want)
	}
	e.fails("node reset pi9: no node named pi9 (see pictl node ls)", "node", "reset", "pi9")
	if got := e.ok("node", "reset", "pi3", "--force"); got != "pi3: own layer discarded; it boots from its image and role again\n" {
		t.Errorf("forced reset printed %q", got)
	}
	if len(fc.resets) != 1 {
		t.Errorf("controller resets: %q", fc.resets)
	}
}
