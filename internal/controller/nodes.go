package controller

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pictl/pictl/dhcpd"
	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/tftpd"
)

// nodeDirectory answers the servers' node lookups from the cluster state in
// force and the runtime facts (leases, the neighbour table). One value
// implements dhcpd.Nodes, tftpd.Nodes, nfsd.Nodes and nfsd.Volumes, so the
// three servers always agree on who a client is.
type nodeDirectory struct {
	cluster func() *cluster.Cluster
	images  *images.Store
	leases  func() []dhcpd.Lease // nil without dhcpd (proxy/off mode)
	neigh   func(netip.Addr) (net.HardwareAddr, bool)
	// roleLayer is a node's role layer directory ("" = none) and the role
	// it renders, known once the roles component has rendered the node;
	// nil without the roles component.
	roleLayer func(node string) (dir, role string, known bool)

	mu    sync.Mutex
	metas map[string]*images.Meta // image metadata by name, read once per image

	macs addrMACs // what leases and neighbours said about an address
}

// --- dhcpd.Nodes

func (d *nodeDirectory) ByMAC(mac net.HardwareAddr) (dhcpd.Node, bool) {
	name, n, ok := d.cluster().NodeByMAC(mac)
	if !ok {
		return dhcpd.Node{}, false
	}
	return dhcpd.Node{Name: name, IP: n.IP, Netboot: n.NetbootEnabled()}, true
}

func (d *nodeDirectory) ByIP(ip netip.Addr) (dhcpd.Node, bool) {
	name, n, ok := d.cluster().NodeByIP(ip)
	if !ok {
		return dhcpd.Node{}, false
	}
	return dhcpd.Node{Name: name, IP: n.IP, Netboot: n.NetbootEnabled()}, true
}

// --- tftpd.Nodes

func (d *nodeDirectory) LookupNode(_ context.Context, key tftpd.NodeKey) (tftpd.Node, bool, error) {
	cl := d.cluster()
	var (
		name string
		n    *cluster.Node
		ok   bool
	)
	switch {
	case key.Serial != "":
		name, n, ok = cl.NodeBySerial(key.Serial)
	case key.MAC != nil:
		if name, n, ok = cl.NodeByMAC(key.MAC); !ok {
			name, n, ok = guest(cl, key.MAC)
		}
	case key.IP.IsValid():
		name, n, ok = d.nodeByAddr(cl, key.IP)
	}
	if !ok {
		return tftpd.Node{}, false, nil
	}
	tn := tftpd.Node{
		Name:    name,
		MAC:     n.PrimaryMAC(),
		Serial:  n.Serial,
		Model:   n.Model,
		Netboot: n.NetbootEnabled(),
		Cmdline: n.Cmdline,
	}
	if img, ok := d.image(cl, n.Image); ok {
		tn.Image = img
	} else {
		// A node without a usable image boots nothing: every file is
		// "not found", as for netboot off.
		tn.Netboot = false
	}
	return tn, true, nil
}

// image resolves a cluster image to its boot files: paths from cluster.yaml
// when given, else the image store's, and the boot kind from the store's
// metadata (or, for a hand-made boot directory, from what it contains).
func (d *nodeDirectory) image(cl *cluster.Cluster, name string) (tftpd.Image, bool) {
	if name == "" {
		if def, _, ok := cl.DefaultImage(); ok {
			name = def
		}
	}
	ci, ok := cl.Images[name]
	if !ok {
		return tftpd.Image{}, false
	}
	img := tftpd.Image{Name: name, BootDir: ci.Boot, Cmdline: ci.Cmdline}
	if img.BootDir == "" {
		img.BootDir = d.images.BootDir(name)
	}
	if m := d.meta(name); m != nil && m.Boot.Kind != "" {
		img.Cmdline = strings.TrimSpace(m.Boot.KernelArgs + " " + img.Cmdline)
		img.Arch = m.Arch
		img.Kind = tftpd.ImagePi
		if m.Boot.Kind == images.BootX86 {
			img.Kind = tftpd.ImageKernelInitrd
			img.Kernel, img.Initrd = m.Boot.Kernel, m.Boot.Initrd
		}
		return img, true
	}
	img.Kind = tftpd.ImageKernelInitrd
	for _, f := range []string{"bootcode.bin", "start4.elf", "config.txt"} {
		if _, err := os.Stat(filepath.Join(img.BootDir, f)); err == nil {
			img.Kind = tftpd.ImagePi
			break
		}
	}
	return img, true
}

// meta reads an image's metadata once; reload() drops the cache so a
// re-imported image is seen.
func (d *nodeDirectory) meta(name string) *images.Meta {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := d.metas[name]; ok {
		return m
	}
	m, err := d.images.Get(name)
	if err != nil {
		m = nil
	}
	if d.metas == nil {
		d.metas = map[string]*images.Meta{}
	}
	d.metas[name] = m
	return m
}

func (d *nodeDirectory) reload() {
	d.mu.Lock()
	d.metas = nil
	d.mu.Unlock()
}

// nodeByAddr finds the node that owns addr: its reservation, else the
// MAC of the lease pictl granted for it, else (proxy mode: another server
// granted it) the MAC the kernel's neighbour table has for it.
func (d *nodeDirectory) nodeByAddr(cl *cluster.Cluster, addr netip.Addr) (string, *cluster.Node, bool) {
	if name, n, ok := cl.NodeByIP(addr); ok {
		return name, n, true
	}
	mac := d.macs.lookup(addr, func() net.HardwareAddr {
		if d.leases != nil {
			for _, l := range d.leases() {
				if l.IP == addr && l.State == dhcpd.LeaseBound {
					return l.MAC
				}
			}
		}
		if d.neigh != nil {
			mac, _ := d.neigh(addr)
			return mac
		}
		return nil
	})
	if mac == nil {
		return "", nil, false
	}
	if name, n, ok := cl.NodeByMAC(mac); ok {
		return name, n, true
	}
	return guest(cl, mac)
}

// guest is the node an unknown client boots as under discovery policy
// "boot": named after its MAC, on the default image, with no role. Its own
// layer persists under that name until someone adopts it.
func guest(cl *cluster.Cluster, mac net.HardwareAddr) (string, *cluster.Node, bool) {
	if cl.Discovery != cluster.DiscoveryBoot || len(mac) != 6 {
		return "", nil, false
	}
	img, _, ok := cl.DefaultImage()
	if !ok {
		return "", nil, false
	}
	return guestPrefix + strings.ReplaceAll(mac.String(), ":", ""), &cluster.Node{MACs: []net.HardwareAddr{mac}, Image: img}, true
}

const guestPrefix = "new-"

// guestByName inverts guest's naming.
func guestByName(cl *cluster.Cluster, name string) (*cluster.Node, bool) {
	hex, ok := strings.CutPrefix(name, guestPrefix)
	if !ok || len(hex) != 12 {
		return nil, false
	}
	mac, err := net.ParseMAC(hex[0:2] + ":" + hex[2:4] + ":" + hex[4:6] + ":" + hex[6:8] + ":" + hex[8:10] + ":" + hex[10:12])
	if err != nil {
		return nil, false
	}
	if _, _, known := cl.NodeByMAC(mac); known {
		return nil, false
	}
	_, n, ok := guest(cl, mac)
	return n, ok
}

// --- nfsd.Nodes and nfsd.Volumes

func (d *nodeDirectory) ByAddr(addr netip.Addr) (nfsd.Node, bool) {
	cl := d.cluster()
	name, n, ok := d.nodeByAddr(cl, addr)
	if !ok {
		return nfsd.Node{}, false
	}
	return d.nfsNode(cl, name, n)
}

func (d *nodeDirectory) ByName(name string) (nfsd.Node, bool) {
	cl := d.cluster()
	n, ok := cl.Nodes[name]
	if !ok {
		if n, ok = guestByName(cl, name); !ok {
			return nfsd.Node{}, false
		}
	}
	return d.nfsNode(cl, name, n)
}

func (d *nodeDirectory) nfsNode(cl *cluster.Cluster, name string, n *cluster.Node) (nfsd.Node, bool) {
	if !n.NetbootEnabled() {
		return nfsd.Node{}, false
	}
	imgName := n.Image
	if imgName == "" {
		imgName, _, _ = cl.DefaultImage()
	}
	ci, ok := cl.Images[imgName]
	if !ok {
		return nfsd.Node{}, false
	}
	root := ci.Root
	if root == "" {
		root = d.images.RootDir(imgName)
	}
	out := nfsd.Node{Name: name, ImageRoot: root}
	// Volumes follow the role in force: a role change the controller
	// refused (its template fails, the image lacks a package) leaves the
	// node running its old role, which keeps its volumes.
	role := n.Role
	if d.roleLayer != nil {
		var inForce string
		var known bool
		if out.RoleLayer, inForce, known = d.roleLayer(name); known {
			role = inForce
		}
	}
	for vname, v := range cl.Volumes {
		if volumeAllows(v, name, role) {
			out.Volumes = append(out.Volumes, vname)
		}
	}
	return out, true
}

func volumeAllows(v *cluster.Volume, name, role string) bool {
	if len(v.Roles) == 0 && len(v.Nodes) == 0 {
		return true
	}
	for _, r := range v.Roles {
		if r == role && role != "" {
			return true
		}
	}
	for _, vn := range v.Nodes {
		if vn == name {
			return true
		}
	}
	return false
}

func (d *nodeDirectory) Volume(name string) (nfsd.Volume, bool) {
	cl := d.cluster()
	v, ok := cl.Volumes[name]
	if !ok {
		return nfsd.Volume{}, false
	}
	path := v.Path
	if path == "" {
		path = filepath.Join(cl.Controller.StateDir, "volumes", name)
	}
	return nfsd.Volume{Name: name, Path: path, ReadOnly: v.ReadOnly, Squash: v.Squash, AnonUID: v.AnonUID, AnonGID: v.AnonGID}, true
}
