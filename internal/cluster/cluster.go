// Package cluster is pictl's desired-state model: what cluster.yaml says.
//
// The types here are plain data. Loading (with file:line:column errors),
// validation and comment-preserving editing (Document) live in this
// package too; reading and writing the file on disk (locking, atomic
// replace, watching) is internal/store's job. The file format is described
// in doc.go.
package cluster

import (
	"net"
	"net/netip"
	"time"
)

// Cluster is the whole desired state.
type Cluster struct {
	Controller Controller          `yaml:"controller"`
	Ports      Ports               `yaml:"ports"`
	DHCP       DHCP                `yaml:"dhcp"`
	TFTP       TFTP                `yaml:"tftp"`
	Discovery  DiscoveryPolicy     `yaml:"discovery"`
	Images     map[string]*Image   `yaml:"images"`
	Nodes      map[string]*Node    `yaml:"nodes"`
	Volumes    map[string]*Volume  `yaml:"volumes"`
	Roles      map[string]*RoleRef `yaml:"roles"`
	Balancer   Balancer            `yaml:"balancer"`

	// userRoles are the roles defined by files in the roles directory
	// beside cluster.yaml (names only; the roles package reads them).
	userRoles []string
}

// Controller describes the host pictl runs on.
type Controller struct {
	// Interfaces the boot network is reached through (DHCP listens here).
	Interfaces []string `yaml:"interfaces"`
	// Address is the controller's address on the boot network, with prefix
	// length: it defines the subnet node addresses must lie in.
	Address netip.Prefix `yaml:"address"`
	// StateDir holds images, node layers and the runtime database.
	StateDir string `yaml:"state_dir"`
	// APISocket is the unix socket of the runtime API.
	APISocket string `yaml:"api_socket"`
}

// Ports are the service ports; 0 means "use the default".
type Ports struct {
	TFTP     uint16 `yaml:"tftp"`
	NFS      uint16 `yaml:"nfs"`
	API      uint16 `yaml:"api"` // TCP API port for remote use (0 = unix socket only)
	Balancer uint16 `yaml:"balancer"`
	// Agent is where the nodes' agents reach the controller (their own
	// listener, with per-node credentials).
	Agent uint16 `yaml:"agent"`
}

// DHCPMode says who owns addresses on the boot network.
type DHCPMode string

const (
	// DHCPFull: pictl hands out addresses (reservations and a pool).
	DHCPFull DHCPMode = "full"
	// DHCPProxy: another server hands out addresses; pictl answers PXE only.
	DHCPProxy DHCPMode = "proxy"
	// DHCPOff: pictl runs no DHCP server at all.
	DHCPOff DHCPMode = "off"
)

// DHCP holds the DHCP server settings.
type DHCP struct {
	Mode DHCPMode `yaml:"mode"`
	// Range is the dynamic pool, full mode only.
	Range    AddrRange    `yaml:"range"`
	Router   netip.Addr   `yaml:"router"`
	DNS      []netip.Addr `yaml:"dns"`
	Domain   string       `yaml:"domain"`
	Lease    Duration     `yaml:"lease"`
	Pi3Delay *Duration    `yaml:"pi3_delay"` // reply delay for b8:27:eb Pi 3s; nil = default 2s
}

// TFTP holds the TFTP server settings.
type TFTP struct {
	// Window is how many blocks go out ahead of their ACKs to clients shown
	// to take it (nodes booting through iPXE, and WindowClients); Raspberry
	// Pis always get one block at a time. 0 = default 8; 1 = every client
	// lock-step; at most 60.
	Window int `yaml:"window"`
	// WindowClients are IPv4 prefixes always sent windowed (PCs running
	// iPXE, curl or tftp-hpa on a link that does not lose packets).
	WindowClients []netip.Prefix `yaml:"window_clients"`
}

// MaxWindowClients is how many tftp.window_clients prefixes tftpd's
// steering program holds (tftpd.MaxWindowClients; the controller's tests
// keep the two equal). Checked here so cluster.yaml names the line.
const MaxWindowClients = 128

// DiscoveryPolicy says what happens to a client that is not in cluster.yaml.
type DiscoveryPolicy string

const (
	DiscoveryRecord DiscoveryPolicy = "record" // remember it, do not boot it (default)
	DiscoveryBoot   DiscoveryPolicy = "boot"   // boot it with the default image
	DiscoveryIgnore DiscoveryPolicy = "ignore" // drop it silently
)

// Image is a bootable image: a boot directory and a root filesystem.
type Image struct {
	Arch string `yaml:"arch"` // arm64, armhf, amd64
	// Boot is the directory tftpd serves (firmware, kernel, DTBs, config.txt).
	Boot string `yaml:"boot"`
	// Root is the root filesystem tree nfsd serves read-only to every node.
	Root string `yaml:"root"`
	// Default marks the image unknown nodes boot under discovery policy "boot".
	Default bool `yaml:"default"`
	// Cmdline is appended to the kernel command line of every node on it.
	Cmdline string `yaml:"cmdline"`
}

// Node is one netbooting machine.
type Node struct {
	// MACs: first is the primary. In YAML either `mac:` or `macs:`.
	MACs    []net.HardwareAddr `yaml:"-"`
	Serial  string             `yaml:"serial"` // Pi serial as 8 (or 16) hex digits
	Model   string             `yaml:"model"`  // pi3, pi3+, pi4, pi5, x86, ...
	Arch    string             `yaml:"arch"`
	Image   string             `yaml:"image"`
	Role    string             `yaml:"role"` // "" = none
	IP      netip.Addr         `yaml:"ip"`   // reserved address; invalid = none
	Netboot *bool              `yaml:"netboot"`
	Cmdline string             `yaml:"cmdline"` // extra kernel arguments for this node
}

// NetbootEnabled reports whether the node may boot from pictl (default yes).
func (n *Node) NetbootEnabled() bool { return n.Netboot == nil || *n.Netboot }

// Volume is a shared export, e.g. the web docroot.
type Volume struct {
	ReadOnly bool   `yaml:"readonly"`
	Path     string `yaml:"path"` // default: <state_dir>/volumes/<name>
	// Roles and Nodes allowed to mount it; both empty = every node.
	Roles []string `yaml:"roles"`
	Nodes []string `yaml:"nodes"`
	// Squash maps the clients' users, as knfsd's export options do:
	// "root" (default, root_squash: uid 0 acts as AnonUID/AnonGID), "none"
	// (no_root_squash) or "all" (all_squash: every user acts as the anonymous one).
	Squash string `yaml:"squash"`
	// AnonUID and AnonGID are the anonymous identity (default 65534, nobody/nogroup).
	AnonUID *uint32 `yaml:"anonuid"`
	AnonGID *uint32 `yaml:"anongid"`
}

// Volume squash modes (Volume.Squash).
const (
	SquashRoot = "root"
	SquashNone = "none"
	SquashAll  = "all"
)

// DefaultAnonID is the uid and gid squashed users act as unless a volume says otherwise.
const DefaultAnonID = 65534

// RoleRef declares a user role, or gives a role (built-in or user) its
// parameters.
type RoleRef struct {
	Description string `yaml:"description"`
	// Vars are the role's parameters (roles: {lb: {vars: {vip: 10.99.0.50}}});
	// the roles package says which a role takes.
	Vars map[string]string `yaml:"vars"`
}

// BuiltinRoles are the role names known even before the roles package
// renders anything.
func BuiltinRoles() []string { return []string{"web", "db", "lb", "router"} }

// Duration is a time.Duration written as "1h", "30s" in YAML.
type Duration time.Duration

// AddrRange is an inclusive address range written "FIRST-LAST".
type AddrRange struct {
	First, Last netip.Addr
}
