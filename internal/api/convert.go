package api

import "github.com/pictl/pictl/internal/cluster"

// NodeFromCluster is the desired-state half of a Node row.
func NodeFromCluster(name string, n *cluster.Node) Node {
	v := Node{
		Name:    name,
		Serial:  n.Serial,
		Model:   n.Model,
		Arch:    n.Arch,
		Image:   n.Image,
		Role:    n.Role,
		Netboot: n.NetbootEnabled(),
	}
	for _, m := range n.MACs {
		v.MACs = append(v.MACs, m.String())
	}
	if n.IP.IsValid() {
		v.IP = n.IP.String()
	}
	return v
}
