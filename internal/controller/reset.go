package controller

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"go.etcd.io/bbolt"

	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/store"
	"github.com/pictl/pictl/nfsd"
)

// layerResetter is the part of nfsd the reset needs (nfsComponent); tests
// register a fake to play a mounted node without a kernel client.
type layerResetter interface {
	Reset(node string, force bool) error
	Exports() []nfsd.ExportStatus
}

// UnknownNodeError: the name is neither in cluster.yaml nor a discovered
// client booting as a guest.
type UnknownNodeError struct{ Name string }

func (e *UnknownNodeError) Error() string {
	return fmt.Sprintf("no node named %s (see pictl node ls)", e.Name)
}
func (e *UnknownNodeError) NotFound() bool { return true }

// NodeInUseError: the node looks mounted, so discarding the layer under it
// would pull files out from under a running system.
type NodeInUseError struct {
	Name string
	Addr string // where the mount came from, "" when unknown
}

func (e *NodeInUseError) Error() string {
	if e.Addr == "" {
		return fmt.Sprintf("node %s is mounted; stop it or use --force", e.Name)
	}
	return fmt.Sprintf("node %s is mounted from %s; stop it or use --force", e.Name, e.Addr)
}
func (e *NodeInUseError) InUse() bool   { return true }
func (e *NodeInUseError) Unwrap() error { return nfsd.ErrNodeInUse }

// knownNode reports whether name has (or may have) an own layer: a node of
// cluster.yaml, or a guest booted under discovery policy "boot".
func knownNode(cl *cluster.Cluster, name string) bool {
	if _, ok := cl.Nodes[name]; ok {
		return true
	}
	_, ok := guestByName(cl, name)
	return ok
}

// ResetNode answers POST /v1/nodes/{name}/reset: it discards the node's own
// layer through the running NFS server, which refuses while the node looks
// mounted unless force is set.
func (c *Controller) ResetNode(_ context.Context, name string, force bool) error {
	if !knownNode(c.Cluster(), name) {
		return &UnknownNodeError{Name: name}
	}
	layers, ok := firstComponent[layerResetter](c)
	if !ok {
		return errors.New("this controller runs no NFS server, so it has no node layers to reset")
	}
	err := layers.Reset(name, force)
	if errors.Is(err, nfsd.ErrNodeInUse) {
		ie := &NodeInUseError{Name: name}
		for _, x := range layers.Exports() {
			if x.Path == "/nodes/"+name {
				ie.Addr = x.LastAddr
			}
		}
		return ie
	}
	if err != nil {
		return fmt.Errorf("reset node %s: %w", name, err)
	}
	return nil // nfsd logs the reset
}

// SwitchByReboot answers POST /v1/nodes/{name}/switch-by-reboot.
func (c *Controller) SwitchByReboot(_ context.Context, name string) error {
	if _, ok := c.Cluster().Nodes[name]; !ok {
		return &UnknownNodeError{Name: name}
	}
	sw, ok := firstComponent[interface{ SwitchByReboot(node string) }](c)
	if !ok {
		return errors.New("this controller renders no role layers, so it switches no roles")
	}
	sw.SwitchByReboot(name)
	return nil
}

// ResetNodeOffline discards a node's own layer while no controller runs,
// working on the state directory directly. With the server down nothing
// can tell whether the node still holds its root mounted (a hard NFS mount
// waits for the server to come back), so there is no in-use check: the
// caller says so to the person.
func ResetNodeOffline(st *store.Store, name string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl, err := st.Load()
	if err != nil {
		return err
	}
	if !knownNode(cl, name) {
		return &UnknownNodeError{Name: name}
	}
	if _, err := os.Stat(cl.Controller.StateDir); errors.Is(err, fs.ErrNotExist) {
		return nil // never served: no node has written anything yet
	}
	db, dbPath, err := OpenRuntimeDB(cl.Controller.StateDir)
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("runtime database %s is busy but the controller's API does not answer (is pictl serve using another --socket?)", dbPath)
	}
	if err != nil {
		return fmt.Errorf("runtime database: %w", err)
	}
	defer db.Close()
	// nfsd.New without Listen opens only the state: the layer directory,
	// the handle key and the identity records Reset drops with the layer.
	dir := &nodeDirectory{cluster: func() *cluster.Cluster { return cl },
		images: imageStore(cl.Controller.StateDir, log)}
	srv, err := nfsd.New(nfsd.Config{StateDir: cl.Controller.StateDir}, dir, dir, db, log, nil)
	if err != nil {
		return err
	}
	if err := srv.Reset(name, false); err != nil {
		return fmt.Errorf("reset node %s: %w", name, err)
	}
	return nil
}
