package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/nfsd"
)

// fakeLayers plays nfsd: a node listed in mounted refuses a reset without
// force, as a node with an open connection does.
type fakeLayers struct {
	mounted map[string]string // node -> address it mounted from
	resets  []string
}

func (f *fakeLayers) Reset(node string, force bool) error {
	if _, ok := f.mounted[node]; ok && !force {
		return fmt.Errorf("nfsd: reset %s: %w (use force)", node, nfsd.ErrNodeInUse)
	}
	f.resets = append(f.resets, node)
	return nil
}

func (f *fakeLayers) Name() string                  { return "nfsd" }
func (f *fakeLayers) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (f *fakeLayers) Exports() []nfsd.ExportStatus {
	var out []nfsd.ExportStatus
	for n, a := range f.mounted {
		out = append(out, nfsd.ExportStatus{Path: "/nodes/" + n, Name: n, LastAddr: a, InUse: true})
	}
	return out
}

func addNode(t *testing.T, c *Controller, name, mac string) {
	t.Helper()
	cl, err := c.cfg.Store.Update(func(d *cluster.Document) error {
		return d.Set(map[string]any{"mac": mac}, "nodes", name)
	})
	if err != nil {
		t.Fatal(err)
	}
	c.current.Store(cl)
}

func TestResetNode(t *testing.T) {
	c, _, _ := newTestController(t)
	defer c.db.Close()
	addNode(t, c, "pi3", "dc:a6:32:01:36:c2")
	addNode(t, c, "pi4", "dc:a6:32:01:36:c4")
	for _, tc := range []struct {
		name     string
		node     string
		force    bool
		noNFS    bool
		wantErr  string
		notFound bool
		inUse    bool
	}{
		{name: "idle node", node: "pi4"},
		{name: "mounted node", node: "pi3", wantErr: "node pi3 is mounted from 10.0.0.13; stop it or use --force", inUse: true},
		{name: "mounted node, forced", node: "pi3", force: true},
		{name: "unknown node", node: "pi9", wantErr: "no node named pi9 (see pictl node ls)", notFound: true},
		{name: "no NFS server", node: "pi4", noNFS: true, wantErr: "runs no NFS server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := &fakeLayers{mounted: map[string]string{"pi3": "10.0.0.13"}}
			c.components = nil
			if !tc.noNFS {
				c.Register(fl)
			}
			err := c.ResetNode(context.Background(), tc.node, tc.force)
			if tc.wantErr == "" {
				if err != nil || len(fl.resets) != 1 || fl.resets[0] != tc.node {
					t.Fatalf("err %v, resets %q", err, fl.resets)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			var nf interface{ NotFound() bool }
			var iu interface{ InUse() bool }
			if (errors.As(err, &nf) && nf.NotFound()) != tc.notFound || (errors.As(err, &iu) && iu.InUse()) != tc.inUse {
				t.Errorf("error %v: NotFound/InUse behaviour wrong", err)
			}
			if tc.inUse && !errors.Is(err, nfsd.ErrNodeInUse) {
				t.Errorf("in-use error does not wrap nfsd.ErrNodeInUse")
			}
			if len(fl.resets) != 0 {
				t.Errorf("a refused reset reached nfsd: %q", fl.resets)
			}
		})
	}
}

// With the controller stopped, the reset works on the state directory:
// the node's files go, its neighbour's stay.
func TestResetNodeOffline(t *testing.T) {
	c, st, _ := newTestController(t)
	addNode(t, c, "pi3", "dc:a6:32:01:36:c2")
	addNode(t, c, "pi4", "dc:a6:32:01:36:c4")
	stateDir := c.Cluster().Controller.StateDir
	c.db.Close() // the controller is "stopped"

	layers := filepath.Join(stateDir, "nfsd", "nodes")
	for _, n := range []string{"pi3", "pi4"} {
		if err := os.MkdirAll(filepath.Join(layers, n, "root", "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(layers, n, "root", "etc", "hostname"), []byte(n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := ResetNodeOffline(st, "pi3", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(layers, "pi3", "root", "etc", "hostname")); !os.IsNotExist(err) {
		t.Errorf("pi3's file survived the reset: %v", err)
	}
	if _, err := os.Stat(filepath.Join(layers, "pi4", "root", "etc", "hostname")); err != nil {
		t.Errorf("pi4's file went with pi3's reset: %v", err)
	}
	entries, _ := os.ReadDir(layers)
	for _, e := range entries {
		if e.Name() != "pi4" {
			t.Errorf("left in the layer directory: %s", e.Name())
		}
	}

	var nf interface{ NotFound() bool }
	if err := ResetNodeOffline(st, "pi9", nil); !errors.As(err, &nf) {
		t.Errorf("unknown node offline: %v", err)
	}
}
