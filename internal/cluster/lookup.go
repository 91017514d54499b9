package cluster

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// The lookups scan the nodes: servers call them per request on the
// snapshot in force, and a scan of a few hundred nodes costs microseconds
// while an index would go stale when a Cluster is edited in memory.

// NodeByMAC finds the node with this MAC among its MACs.
func (c *Cluster) NodeByMAC(mac net.HardwareAddr) (name string, n *Node, ok bool) {
	for name, n := range c.Nodes {
		if n == nil {
			continue
		}
		for _, m := range n.MACs {
			if bytes.Equal(m, mac) {
				return name, n, true
			}
		}
	}
	return "", nil, false
}

// NodeBySerial finds the node with this Pi serial. 8 and 16 digit forms
// match each other by their last 8 digits (the TFTP path prefix a Pi uses);
// case does not matter.
func (c *Cluster) NodeBySerial(serial string) (name string, n *Node, ok bool) {
	key := serialKey(serial)
	if key == "" {
		return "", nil, false
	}
	for name, n := range c.Nodes {
		if n != nil && serialKey(n.Serial) == key {
			return name, n, true
		}
	}
	return "", nil, false
}

func serialKey(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) < 8 {
		return ""
	}
	return s[len(s)-8:]
}

// SerialPrefix is the 8 hex digits a Pi puts before its TFTP paths, or ""
// when the node has no serial.
func (n *Node) SerialPrefix() string { return serialKey(n.Serial) }

// NodeByIP finds the node whose reserved address is ip.
func (c *Cluster) NodeByIP(ip netip.Addr) (name string, n *Node, ok bool) {
	ip = ip.Unmap()
	for name, n := range c.Nodes {
		if n != nil && n.IP.IsValid() && n.IP == ip {
			return name, n, true
		}
	}
	return "", nil, false
}

// PrimaryMAC is the node's first MAC, nil if it has none.
func (n *Node) PrimaryMAC() net.HardwareAddr {
	if len(n.MACs) == 0 {
		return nil
	}
	return n.MACs[0]
}

// NodeNames lists the node names in natural order (pi2 before pi10).
func (c *Cluster) NodeNames() []string {
	out := make([]string, 0, len(c.Nodes))
	for name := range c.Nodes {
		out = append(out, name)
	}
	slices.SortFunc(out, NaturalCompare)
	return out
}

// NaturalCompare orders strings with embedded numbers by value: pi2 < pi10.
func NaturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// DefaultImage is the image marked default: true, or the only image when
// there is just one.
func (c *Cluster) DefaultImage() (name string, img *Image, ok bool) {
	for name, img := range c.Images {
		if img != nil && img.Default {
			return name, img, true
		}
	}
	if len(c.Images) == 1 {
		for name, img := range c.Images {
			return name, img, img != nil
		}
	}
	return "", nil, false
}

// RoleKnown reports whether role is built in, defined by a file in the
// roles directory beside cluster.yaml, or declared under roles:.
func (c *Cluster) RoleKnown(role string) bool {
	if slices.Contains(BuiltinRoles(), role) || slices.Contains(c.userRoles, role) {
		return true
	}
	_, ok := c.Roles[role]
	return ok
}

// RoleNames lists the built-in roles, then the user's (files in the roles
// directory and roles: entries) sorted.
func (c *Cluster) RoleNames() []string {
	user := make([]string, 0, len(c.Roles)+len(c.userRoles))
	for name := range c.Roles {
		if !slices.Contains(BuiltinRoles(), name) && name != "none" {
			user = append(user, name)
		}
	}
	for _, name := range c.userRoles {
		if !slices.Contains(BuiltinRoles(), name) && name != "none" && !slices.Contains(user, name) {
			user = append(user, name)
		}
	}
	sort.Strings(user)
	return append(BuiltinRoles(), user...)
}

// Subnet is the boot network: controller.address without its host bits.
func (c *Cluster) Subnet() netip.Prefix { return c.Controller.Address.Masked() }
