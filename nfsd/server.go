package nfsd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	nfs "github.com/willscott/go-nfs"
	"go.etcd.io/bbolt"
)

// Server serves node roots and volumes over NFSv3 (NFS and MOUNT on one
// TCP port, no portmapper, no NLM: clients mount with
// vers=3,proto=tcp,port=P,mountport=P,nolock).
type Server struct {
	cfg     Config
	nodes   Nodes
	volumes Volumes
	log     *slog.Logger
	store   *store
	codec   *handleCodec
	metrics *metrics
	guard   *connGuard
	indexes indexRegistry
	lists   listingCache
	// lowerFDs holds the open files of read-only layers (images, role
	// layers) for every export: see export.fdsFor.
	lowerFDs fdCache
	// readBufs holds the READ reply buffers of the direct READ path.
	readBufs sync.Pool
	// writeVerf is the WRITE/COMMIT verifier of this server instance.
	writeVerf [8]byte

	mu       sync.Mutex
	exports  map[string]*export // by export path ("/nodes/pi3")
	byNumber map[uint32]*export
	ln       net.Listener
	conns    map[*trackedConn]struct{}
	ipConns  map[netip.Addr]int
	// Unflushed metadata changes: the directories and files to fsync, or,
	// past maxDirty of them, whole file systems (by a directory on them) to
	// syncfs.
	dirty   map[string]string // path -> its export's sync root
	dirtyFS map[string]bool
}

const maxDirty = 8192

// ErrNodeInUse is returned by Reset when the node looks mounted.
var ErrNodeInUse = errors.New("node is mounted")

// New creates a server. db is the controller's runtime database (nfsd keeps
// its buckets prefixed "nfsd."), reg may be nil.
func New(cfg Config, nodes Nodes, volumes Volumes, db *bbolt.DB, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("nfsd: Config.StateDir is required")
	}
	if nodes == nil || db == nil {
		return nil, errors.New("nfsd: nodes and db are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := newStore(db)
	if err != nil {
		return nil, err
	}
	st.writeThrough = cfg.SyncMetadata
	key, err := loadOrCreateKey(cfg.keyFile())
	if err != nil {
		return nil, fmt.Errorf("nfsd: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	guard, err := newConnGuard(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.layerDir(), 0o700); err != nil {
		return nil, fmt.Errorf("nfsd: create layer dir: %w", err)
	}
	return &Server{
		cfg: cfg, nodes: nodes, volumes: volumes, log: log,
		store: st, codec: newHandleCodec(key), metrics: m, guard: guard,
		exports:   make(map[string]*export),
		byNumber:  make(map[uint32]*export),
		conns:     make(map[*trackedConn]struct{}),
		ipConns:   make(map[netip.Addr]int),
		dirty:     make(map[string]string),
		dirtyFS:   make(map[string]bool),
		lowerFDs:  fdCache{max: maxSharedFDs},
		readBufs:  sync.Pool{New: newReadBuf},
		writeVerf: newWriteVerf(),
	}, nil
}

// Listen opens the TCP socket (separately from Serve, so a test can open
// it inside a network namespace).
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.addr())
	if err != nil {
		return fmt.Errorf("nfsd: listen %s: %w", s.cfg.addr(), err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return nil
}

// Addr is the listening address (after Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve answers requests until ctx is cancelled, then closes the socket
// and every client connection.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
		ln = s.ln
	}
	srv := &nfs.Server{Handler: recoverHandler(&handler{s: s}, s.guard), Context: ctx, ID: s.writeVerf}
	errc := make(chan error, 1)
	go func() {
		fl := &fanoutListener{Listener: &trackedListener{Listener: s.guard.listen(ln), s: s}, workers: s.cfg.connWorkers(), fast: s.serveCall, quick: s.quickCall, guard: s.guard}
		errc <- srv.Serve(fl)
	}()
	s.log.Info("nfs server listening", "addr", ln.Addr().String())
	tick := time.NewTicker(s.cfg.metadataFlush())
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			s.Flush()
			s.sweepFiles()
		case <-ctx.Done():
			ln.Close()
			s.closeConns()
			<-errc
			s.closeFiles()
			return s.Flush()
		case err := <-errc:
			s.closeConns()
			ferr := s.Flush()
			if ctx.Err() != nil {
				return ferr
			}
			return fmt.Errorf("nfsd: serve: %w", err)
		}
	}
}

func (s *Server) sweepFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.exports {
		x.fds.sweep()
	}
	s.lowerFDs.sweep()
}

func (s *Server) closeFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.exports {
		x.fds.closeAll()
	}
	s.lowerFDs.closeAll()
}

func (s *Server) markDirty(root string, paths ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirtyFS[root] {
		return
	}
	for _, p := range paths {
		s.dirty[p] = root
	}
	if len(s.dirty) > maxDirty {
		s.dirtyFS[root] = true
	}
}

// Flush makes every metadata change made so far durable (fsync of each
// touched directory, or syncfs when there were very many), then commits the
// pending identity records. Serve calls it every Config.MetadataFlush and
// on shutdown.
func (s *Server) Flush() error {
	s.mu.Lock()
	paths, roots := s.dirty, s.dirtyFS
	s.dirty, s.dirtyFS = make(map[string]string), make(map[string]bool)
	s.mu.Unlock()
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for r := range roots {
		if err := syncFS(r); err != nil {
			s.log.Error("nfs metadata flush failed", "dir", r, "err", err)
			s.markDirty(r, r)
			note(err)
		}
	}
	for p, root := range paths {
		if roots[root] {
			continue
		}
		// Gone since (removed, renamed): its parent's sync covers it.
		if err := syncPath(p); err != nil && !os.IsNotExist(err) && !errors.Is(err, syscall.ENOENT) {
			s.log.Error("nfs metadata flush failed", "path", p, "err", err)
			note(err)
		}
	}
	if err := s.store.flush(); err != nil {
		s.log.Error("nfs record flush failed", "err", err)
		note(err)
	}
	return first
}

func nodeExportPath(name string) string   { return "/nodes/" + name }
func volumeExportPath(name string) string { return "/volumes/" + name }

// validName keeps node and volume names usable as one path element.
func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00") && len(n) <= 255
}

// exportFor returns the open export at path, opening it on first use.
func (s *Server) exportFor(path string) (*export, error) {
	s.mu.Lock()
	x := s.exports[path]
	s.mu.Unlock()
	if x != nil {
		return x, nil
	}
	var err error
	switch {
	case strings.HasPrefix(path, "/nodes/"):
		name := strings.TrimPrefix(path, "/nodes/")
		n, ok := s.nodes.ByName(name)
		if !ok || !validName(name) {
			return nil, fmt.Errorf("nfsd: no node %q", name)
		}
		x, err = s.openNode(n)
	case strings.HasPrefix(path, "/volumes/"):
		name := strings.TrimPrefix(path, "/volumes/")
		if s.volumes == nil || !validName(name) {
			return nil, fmt.Errorf("nfsd: no volume %q", name)
		}
		v, ok := s.volumes.Volume(name)
		if !ok {
			return nil, fmt.Errorf("nfsd: no volume %q", name)
		}
		x, err = s.openVolume(v)
	default:
		return nil, fmt.Errorf("nfsd: no export %q", path)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if y := s.exports[path]; y != nil {
		return y, nil // lost a race to open it
	}
	if y := s.byNumber[x.number]; y != nil {
		return nil, fmt.Errorf("nfsd: exports %s and %s share number %d", y.name, x.name, x.number)
	}
	s.exports[path] = x
	s.byNumber[x.number] = x
	return x, nil
}

func (s *Server) nodeLayers(n Node, upper string) ([]*layer, error) {
	if fi, err := os.Stat(n.ImageRoot); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("nfsd: node %s: image root %q is not a directory", n.Name, n.ImageRoot)
	}
	layers := []*layer{{kind: kindUpper, root: upper}}
	if n.RoleLayer != "" {
		if fi, err := os.Stat(n.RoleLayer); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("nfsd: node %s: role layer %q is not a directory", n.Name, n.RoleLayer)
		}
		layers = append(layers, &layer{kind: kindRole, root: filepath.Clean(n.RoleLayer)})
	}
	root := filepath.Clean(n.ImageRoot)
	layers = append(layers, &layer{kind: kindImage, root: root, index: s.indexes.get(root, 0)})
	return layers, nil
}

func (s *Server) openNode(n Node) (*export, error) {
	path := nodeExportPath(n.Name)
	num, err := s.store.exportNumber(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.cfg.layerDir(), n.Name)
	upper, work, err := prepareUpper(dir, n.ImageRoot)
	if err != nil {
		return nil, fmt.Errorf("nfsd: node %s: %w", n.Name, err)
	}
	layers, err := s.nodeLayers(n, upper)
	if err != nil {
		return nil, err
	}
	x := &export{
		name: path, number: num, kind: exportNode, label: n.Name, srv: s,
		dir: dir, upperDir: upper, workDir: work,
		imageRoot: n.ImageRoot, roleLayer: n.RoleLayer,
		t: newTree(layers),
	}
	x.writable.Store(true)
	return x, nil
}

func (s *Server) openVolume(v Volume) (*export, error) {
	path := volumeExportPath(v.Name)
	if fi, err := os.Stat(v.Path); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("nfsd: volume %s: %q is not a directory", v.Name, v.Path)
	}
	num, err := s.store.exportNumber(path)
	if err != nil {
		return nil, err
	}
	root := filepath.Clean(v.Path)
	x := &export{
		name: path, number: num, kind: exportVolume, label: v.Name, srv: s,
		imageRoot: root,
		t:         newTree([]*layer{{kind: kindPlain, root: root, index: s.indexes.get(root, 5*time.Second)}}),
	}
	x.writable.Store(!v.ReadOnly)
	x.vol.Store(&v)
	return x, nil
}

// refresh follows cluster changes for an open export: a new role layer or
// image is swapped in under the write lock (atomic for clients), a node or
// volume that is gone makes its handles stale.
func (s *Server) refresh(x *export) error {
	switch x.kind {
	case exportNode:
		n, ok := s.nodes.ByName(x.label)
		if !ok {
			return fmt.Errorf("nfsd: node %s is gone", x.label)
		}
		x.mu.RLock()
		same := n.ImageRoot == x.imageRoot && n.RoleLayer == x.roleLayer
		x.mu.RUnlock()
		if same {
			return nil
		}
		layers, err := s.nodeLayers(n, x.upperDir)
		if err != nil {
			return err
		}
		x.mu.Lock()
		x.t = newTree(layers)
		x.imageRoot, x.roleLayer = n.ImageRoot, n.RoleLayer
		x.cache.invalidate()
		x.mu.Unlock()
		s.log.Info("nfs node layers swapped", "node", x.label, "image", n.ImageRoot, "role_layer", n.RoleLayer)
	case exportVolume:
		if s.volumes == nil {
			return fmt.Errorf("nfsd: volume %s is gone", x.label)
		}
		v, ok := s.volumes.Volume(x.label)
		if !ok {
			return fmt.Errorf("nfsd: volume %s is gone", x.label)
		}
		x.writable.Store(!v.ReadOnly)
		x.vol.Store(&v)
		x.mu.RLock()
		same := filepath.Clean(v.Path) == x.imageRoot
		x.mu.RUnlock()
		if same {
			return nil
		}
		root := filepath.Clean(v.Path)
		x.mu.Lock()
		x.t = newTree([]*layer{{kind: kindPlain, root: root, index: s.indexes.get(root, 5*time.Second)}})
		x.imageRoot = root
		x.cache.invalidate()
		x.mu.Unlock()
	}
	return nil
}

// exportByNumber finds the export a handle names, reopening it after a
// restart from the persistent name table.
func (s *Server) exportByNumber(n uint32) (*export, error) {
	s.mu.Lock()
	x := s.byNumber[n]
	s.mu.Unlock()
	if x != nil {
		return x, nil
	}
	var path string
	_ = s.store.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketExports).ForEach(func(k, v []byte) error {
			if len(v) == 4 && binary.BigEndian.Uint32(v) == n && k[0] == '/' {
				path = string(k)
			}
			return nil
		})
	})
	if path == "" {
		return nil, errStale
	}
	return s.exportFor(path)
}

// Reset discards a node's own layer: the node boots from its image and role
// layer again. It refuses while the node looks mounted (a connection from
// its last mount address is open, or it sent a request within
// Config.ActiveWindow) unless force is set.
func (s *Server) Reset(node string, force bool) error {
	if !validName(node) {
		return fmt.Errorf("nfsd: invalid node name %q", node)
	}
	path := nodeExportPath(node)
	s.mu.Lock()
	x := s.exports[path]
	s.mu.Unlock()
	if x != nil && !force && s.inUse(x) {
		return fmt.Errorf("nfsd: reset %s: %w (use force)", node, ErrNodeInUse)
	}
	num, err := s.store.exportNumber(path)
	if err != nil {
		return err
	}
	if x != nil {
		x.mu.Lock()
		defer x.mu.Unlock()
	}
	dir := filepath.Join(s.cfg.layerDir(), node)
	trash := fmt.Sprintf("%s/.trash-%s-%d", s.cfg.layerDir(), node, time.Now().UnixNano())
	if err := os.Rename(dir, trash); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("nfsd: reset %s: %w", node, err)
	}
	if err := syncDir(s.cfg.layerDir()); err != nil {
		return err
	}
	if err := s.store.dropRecords(num); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		s.log.Warn("nfs reset: could not remove old layer", "node", node, "dir", trash, "err", err)
	}
	if x != nil {
		upper, work, err := prepareUpper(dir, x.imageRoot)
		if err != nil {
			return fmt.Errorf("nfsd: reset %s: %w", node, err)
		}
		x.upperDir, x.workDir = upper, work
		x.fds.closeAll()
		layers := append([]*layer{{kind: kindUpper, root: upper}}, x.t.layers[1:]...)
		x.t = newTree(layers)
		x.cache.invalidate()
		x.cache.mu.Lock()
		x.cache.paths = nil
		x.cache.mu.Unlock()
	}
	s.log.Info("nfs node layer reset", "node", node, "forced", force)
	return nil
}

// ExportStatus describes one open export, for the API.
type ExportStatus struct {
	Path        string    `json:"path"` // "/nodes/pi3", "/volumes/www"
	Name        string    `json:"name"`
	Writable    bool      `json:"writable"`
	Mounts      int64     `json:"mounts"`
	LastAddr    string    `json:"last_addr,omitempty"`
	LastRequest time.Time `json:"last_request,omitzero"`
	InUse       bool      `json:"in_use"`
}

// Exports lists the exports opened since the server started.
func (s *Server) Exports() []ExportStatus {
	s.mu.Lock()
	list := make([]*export, 0, len(s.exports))
	for _, x := range s.exports {
		list = append(list, x)
	}
	s.mu.Unlock()
	out := make([]ExportStatus, 0, len(list))
	for _, x := range list {
		st := ExportStatus{Path: x.name, Name: x.label, Writable: x.writable.Load(), Mounts: x.mounts.Load(), InUse: s.inUse(x)}
		if a, ok := x.lastAddr.Load().(string); ok {
			st.LastAddr = a
		}
		if ns := x.lastSeen.Load(); ns != 0 {
			st.LastRequest = time.Unix(0, ns)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// NodeInUse reports whether a node looks mounted (see Reset).
func (s *Server) NodeInUse(node string) bool {
	s.mu.Lock()
	x := s.exports[nodeExportPath(node)]
	s.mu.Unlock()
	return x != nil && s.inUse(x)
}

func (s *Server) inUse(x *export) bool {
	if a, ok := x.lastAddr.Load().(string); ok {
		if ip, err := netip.ParseAddr(a); err == nil {
			s.mu.Lock()
			n := s.ipConns[ip]
			s.mu.Unlock()
			if n > 0 {
				return true
			}
		}
	}
	return x.inUse(s.cfg.activeWindow())
}
