package controller

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

// Everything the controller runs plugs in the same way: it is a Component,
// and it implements whichever of the small interfaces below it has
// something to say in. The controller asks its components list, so a new
// component (roles, the agent listener, the balancer) adds no field and no
// branch here.

// Component is a server the controller runs: dhcpd, tftpd, nfsd, the
// balancer. Run blocks until ctx is cancelled; an error stops the controller.
type Component interface {
	Name() string
	Run(ctx context.Context) error
}

// Reloader is implemented by components that must act on a new cluster
// state (most only read the current state per request and need not).
type Reloader interface {
	Reload(ctx context.Context, c *cluster.Cluster) error
}

// FactSource is implemented by components that observe nodes (leases,
// boot stages, last seen) and fill in their part of a node's runtime row.
// The controller asks them in registration order, so a later source may
// refine an earlier one's boot stage.
type FactSource interface {
	NodeFacts(ctx context.Context, name string, n *cluster.Node, into *api.NodeRuntime)
}

// AddressSource is implemented by components that see where a node is on
// the network: its lease, the source of its TFTP or NFS requests.
type AddressSource interface {
	NodeSighting(name string, n *cluster.Node) (Sighting, bool)
}

// Sighting is one observation of a node's address.
type Sighting struct {
	Addr netip.Addr
	At   time.Time
	// Leased: pictl granted Addr, so it is the node's until the lease
	// ends, however fresh other sightings are.
	Leased bool
}

// DiscoverySource lists clients that asked to boot but are not nodes.
type DiscoverySource interface {
	Discovered(cl *cluster.Cluster) ([]api.Discovered, error)
}

// componentsAs lists the registered components that implement T, in
// registration order.
func componentsAs[T any](c *Controller) []T {
	c.mu.Lock()
	comps := slices.Clone(c.components)
	c.mu.Unlock()
	var out []T
	for _, comp := range comps {
		if t, ok := comp.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// firstComponent is the first registered component that implements T.
func firstComponent[T any](c *Controller) (T, bool) {
	all := componentsAs[T](c)
	if len(all) == 0 {
		var zero T
		return zero, false
	}
	return all[0], true
}

// SeenAddress is where node name was last seen: its lease when pictl
// granted one, else the freshest source address of its requests. It is
// the one answer to "where is node X now" for the runtime rows, the role
// templates, the agent listener and the balancer.
func (c *Controller) SeenAddress(name string, n *cluster.Node) (Sighting, bool) {
	var best Sighting
	found := false
	for _, src := range componentsAs[AddressSource](c) {
		s, ok := src.NodeSighting(name, n)
		if !ok || !s.Addr.IsValid() {
			continue
		}
		switch {
		case !found, s.Leased && !best.Leased, s.Leased == best.Leased && s.At.After(best.At):
			best, found = s, true
		}
	}
	return best, found
}

// NodeAddress is node name's current address: where it was last seen,
// else its reservation in cluster.yaml. Invalid when neither is known.
func (c *Controller) NodeAddress(name string) netip.Addr {
	cl := c.Cluster()
	n, ok := cl.Nodes[name]
	if !ok {
		if n, ok = guestByName(cl, name); !ok {
			return netip.Addr{}
		}
	}
	if s, ok := c.SeenAddress(name, n); ok {
		return s.Addr
	}
	return n.IP
}
