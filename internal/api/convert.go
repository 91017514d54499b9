package api

import (
	"net"
	"strconv"

	"github.com/pictl/pictl/internal/cluster"
)

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

// PageURL is the status page on the controller's boot-network address,
// "" when cluster.yaml gives the API no TCP port. The listener takes every
// address, so other addresses of the host work as well.
func PageURL(cl *cluster.Cluster) string {
	if cl.Ports.API == 0 {
		return ""
	}
	host := "localhost"
	if a := cl.Controller.Address.Addr(); a.IsValid() {
		host = a.String()
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(int(cl.Ports.API))) + "/"
}
