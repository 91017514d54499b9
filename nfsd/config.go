package nfsd

import (
	"net/netip"
	"path/filepath"
	"time"
)

// Node is what nfsd needs to know about one netbooting node.
type Node struct {
	Name string
	// ImageRoot is the image's root file system tree: the read-only bottom
	// layer, shared by every node on the image.
	ImageRoot string
	// RoleLayer is a tree of files rendered for the node's role, laid over
	// the image ("" = none). It is read-only for nfsd; it may contain
	// overlayfs-style whiteouts (char 0:0) and opaque directories
	// (trusted.overlay.opaque=y). A different path than before swaps the
	// layer atomically: each NFS request sees either the old tree or the
	// new one. Render into a new directory, never rewrite a live one.
	RoleLayer string
	// Volumes the node may mount under /volumes/<name>.
	Volumes []string
}

// Nodes looks nodes up; nfsd asks on every MOUNT (ByAddr) and on every
// request (ByName, to follow image and role changes), so the implementation
// must be cheap and safe for concurrent use.
type Nodes interface {
	// ByAddr returns the node that owns addr now (reservation or lease).
	ByAddr(addr netip.Addr) (Node, bool)
	ByName(name string) (Node, bool)
}

// Volume is a shared export.
type Volume struct {
	Name     string
	Path     string
	ReadOnly bool
	// Squash maps the clients' users: SquashRoot ("" too), SquashNone or
	// SquashAll, as knfsd's root_squash, no_root_squash and all_squash.
	Squash string
	// AnonUID and AnonGID are the anonymous identity squashed users act
	// as (nil: Config's, default 65534).
	AnonUID, AnonGID *uint32
}

// Volumes looks volumes up by name.
type Volumes interface {
	Volume(name string) (Volume, bool)
}

// Config holds the server settings. Zero values mean the defaults.
type Config struct {
	// Addr is the TCP address NFS and MOUNT share. Default ":2049".
	Addr string
	// StateDir is pictl's state directory (required). nfsd keeps its handle
	// key in <StateDir>/nfsd/handle.key and the nodes' own layers in
	// LayerDir.
	StateDir string
	// LayerDir holds one directory per node (its own layer and a work
	// directory on the same file system). Default <StateDir>/nfsd/nodes.
	LayerDir string
	// ActiveWindow: a node whose export saw a request this recently (or
	// that has a connection open) counts as mounted, and Reset refuses to
	// discard its layer without force. Default 2 minutes.
	ActiveWindow time.Duration
	// NoSyncWrites turns off the fdatasync of written files (at WRITE and
	// COMMIT) while clients are told their data is on stable storage, so
	// this trades crash safety for speed; only for benchmarks and
	// throw-away nodes.
	NoSyncWrites bool
	// SyncMetadata makes every namespace or attribute change (create,
	// remove, rename, chmod...) and its identity record durable before the
	// reply, as NFSv3 asks and knfsd's "sync" exports do: one or more
	// fsyncs per change. Default off: such changes are flushed together
	// every MetadataFlush (like ganesha, or knfsd's "async"); file data is
	// synced before a stable WRITE or a COMMIT is answered, and on ext4
	// that also commits every metadata change made before it.
	SyncMetadata bool
	// MetadataFlush is the background flush period. Default 1 second.
	MetadataFlush time.Duration
	// ConnWorkers is how many requests of one client connection are
	// served in parallel (go-nfs alone serves them one by one). Default 4;
	// 1 turns the fan-out off.
	ConnWorkers int
	// GoNFSRead leaves every READ to go-nfs instead of answering valid
	// READs of regular files directly (fastread.go); for comparison.
	GoNFSRead bool
	// GoNFSLookup leaves every LOOKUP, GETATTR and ACCESS to go-nfs
	// instead of answering those with valid handles directly
	// (fastlookup.go, fastattr.go); for comparison.
	GoNFSLookup bool
	// AnonUID and AnonGID are who calls without credentials (AUTH_NONE)
	// act as, and squashed users of volumes without their own. 0 means the
	// default, 65534 (nobody, nogroup).
	AnonUID, AnonGID uint32
	// RefuseAuthNone refuses calls without credentials (AUTH_NONE) instead
	// of mapping them to the anonymous user.
	RefuseAuthNone bool

	// MaxConns and MaxConnsPerClient bound the open client connections in
	// total and per client address (defaults 1024 and 64, see
	// internal/connlimit); past a bound the least useful connection is
	// closed (never proven first, then the longest idle).
	MaxConns          int
	MaxConnsPerClient int
	// UnprovenTimeout closes a connection that sent no well-formed NFS or
	// MOUNT call this long after it was accepted. Default 10 s.
	UnprovenTimeout time.Duration
	// RecordMemory bounds the bytes of RPC records read and not yet
	// handled, over all connections; a connection whose record does not
	// fit is closed. Default 128 MiB.
	RecordMemory int64
	// RecordTimeout closes a connection whose record does not arrive
	// whole within this time of its first byte. Default 30 s.
	RecordTimeout time.Duration
}

const DefaultAddr = ":2049"

func (c *Config) addr() string {
	if c.Addr == "" {
		return DefaultAddr
	}
	return c.Addr
}

func (c *Config) layerDir() string {
	if c.LayerDir != "" {
		return c.LayerDir
	}
	return filepath.Join(c.StateDir, "nfsd", "nodes")
}

func (c *Config) keyFile() string { return filepath.Join(c.StateDir, "nfsd", "handle.key") }

func (c *Config) activeWindow() time.Duration {
	if c.ActiveWindow <= 0 {
		return 2 * time.Minute
	}
	return c.ActiveWindow
}

func (c *Config) connWorkers() int {
	if c.ConnWorkers <= 0 {
		return 4
	}
	return c.ConnWorkers
}

func (c *Config) syncWrites() bool   { return !c.NoSyncWrites }
func (c *Config) syncMetadata() bool { return c.SyncMetadata }

func (c *Config) metadataFlush() time.Duration {
	if c.MetadataFlush <= 0 {
		return time.Second
	}
	return c.MetadataFlush
}

func (c *Config) anonUID() uint32 {
	if c.AnonUID == 0 {
		return DefaultAnonID
	}
	return c.AnonUID
}

func (c *Config) anonGID() uint32 {
	if c.AnonGID == 0 {
		return DefaultAnonID
	}
	return c.AnonGID
}
