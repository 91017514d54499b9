package controller

import (
	"fmt"
	"net/netip"

	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/store"
	"github.com/pictl/pictl/roles"
)

// PreviewToken stands in for a node's credential in a preview, which a
// person may paste anywhere.
const PreviewToken = "<this node's agent token>"

// PreviewRole renders the files node would get with role (its own role
// when role is ""), without a controller: addresses are the reservations,
// the credential a placeholder, the user roles those beside cluster.yaml.
func PreviewRole(st *store.Store, cl *cluster.Cluster, node, role string) (*roles.Tree, error) {
	n, ok := cl.Nodes[node]
	if !ok {
		return nil, &UnknownNodeError{Name: node}
	}
	if role != "" {
		cp := *n
		cp.Role = role
		n = &cp
		cl2 := *cl
		cl2.Nodes = map[string]*cluster.Node{}
		for k, v := range cl.Nodes {
			cl2.Nodes[k] = v
		}
		cl2.Nodes[node] = n
		cl = &cl2
	}
	rend, err := loadRoleCatalog(userRolesDir(st))
	if err != nil {
		return nil, err
	}
	if n.Role != "" && n.Role != roles.NoRole && !rend.Known(n.Role) {
		return nil, fmt.Errorf("unknown role %q", n.Role)
	}
	t, err := rend.Render(renderInput{
		Name: node, Node: n, Arch: nodeArch(cl, n, nil), Cluster: cl,
		Addr: func(name string) netip.Addr {
			if x, ok := cl.Nodes[name]; ok {
				return x.IP
			}
			return netip.Addr{}
		},
		Agent: agentFacts{URL: agentURL(cl), Token: PreviewToken, BinaryPath: agentBinaryPath},
	})
	if err != nil {
		return nil, err
	}
	return t.(*roles.Tree), nil
}
