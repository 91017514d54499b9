package controller

import (
	"net/netip"
	"slices"

	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/roles"
)

// catalogRenderer is the roles package seen through roleRenderer: it
// turns the cluster into roles' Node and Facts.
type catalogRenderer struct{ c *roles.Catalog }

// loadRoleCatalog loads the built-in roles and the user's directory.
func loadRoleCatalog(userDir string) (roleRenderer, error) {
	c, err := roles.LoadCatalog(userDir)
	if err != nil {
		return nil, err
	}
	return catalogRenderer{c}, nil
}

func (r catalogRenderer) Known(role string) bool {
	_, ok := r.c.Role(role)
	return ok
}

func (r catalogRenderer) Packages(role string) [][]string {
	if ro, ok := r.c.Role(role); ok {
		return ro.Packages()
	}
	return nil
}

func (r catalogRenderer) Balancer(role string) (int, bool) {
	ro, ok := r.c.Role(role)
	if !ok {
		return 0, false
	}
	port, _, ok := ro.Balancer()
	return port, ok
}

func (r catalogRenderer) Target(role string) string { return roles.TargetName(role) }

func (r catalogRenderer) Render(in renderInput) (roleTree, error) {
	cl := in.Cluster
	f := roles.Facts{
		ControllerAddr: cl.Controller.Address.Addr(),
		Subnet:         cl.Controller.Address.Masked(),
		NFSPort:        cl.Ports.NFS,
		Volumes:        map[string]roles.Volume{},
		Vars:           map[string]map[string]string{},
		Agent:          roles.AgentFacts{URL: in.Agent.URL, Token: in.Agent.Token, BinaryPath: in.Agent.BinaryPath},
	}
	for name, v := range cl.Volumes {
		if volumeAllows(v, in.Name, in.Node.Role) {
			f.Volumes[name] = roles.Volume{Export: "/volumes/" + name, ReadOnly: v.ReadOnly}
		}
	}
	for name, ref := range cl.Roles {
		if len(ref.Vars) > 0 {
			f.Vars[name] = ref.Vars
		}
	}
	var self roles.Node
	for _, name := range sortedNodeNames(cl) {
		n := cl.Nodes[name]
		rn := roleNode(cl, name, n, in.Addr(name))
		if name == in.Name {
			rn.Arch = in.Arch
			self = rn
		}
		f.Nodes = append(f.Nodes, rn)
	}
	if self.Name == "" {
		self = roleNode(cl, in.Name, in.Node, in.Addr(in.Name))
		self.Arch = in.Arch
	}
	slices.SortFunc(f.Nodes, func(a, b roles.Node) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	t, err := r.c.Render(self, f)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func roleNode(cl *cluster.Cluster, name string, n *cluster.Node, addr netip.Addr) roles.Node {
	arch := n.Arch
	if arch == "" {
		if _, img, ok := imageOf(cl, n); ok {
			arch = img.Arch
		}
	}
	return roles.Node{Name: name, Arch: arch, Addr: addr, MAC: n.PrimaryMAC().String(), Role: n.Role}
}
