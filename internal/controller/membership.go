package controller

import (
	"net/netip"
	"slices"
	"strings"
)

// Member is a node serving a role that offers the balancer a port.
type Member struct {
	Node  string
	Role  string
	Addr  netip.Addr // NodeAddress: lease, else last seen, else reservation
	Port  int
	State string // api.RoleActive, RoleFailed, RoleSwitching, RoleNotSeen
}

// Membership answers the balancer and the lb role: who serves a role now,
// and when that changes. A node leaving a role is drained (every Drainer
// component) before its layer changes, and only then leaves the list.
type Membership interface {
	Members(role string) []Member
	// Changes returns a channel closed at the next change of any role's
	// members or their states; call Members again, then Changes again.
	Changes() <-chan struct{}
}

// Members lists role's nodes by name.
func (r *roleLayers) Members(role string) []Member {
	r.mu.Lock()
	type row struct {
		name  string
		port  int
		state string
	}
	var rows []row
	for name, e := range r.nodes {
		if e.desired.Role == role && role != "" && e.port > 0 {
			rows = append(rows, row{name, e.port, e.status().State})
		}
	}
	r.mu.Unlock()
	out := make([]Member, 0, len(rows))
	for _, x := range rows {
		out = append(out, Member{Node: x.name, Role: role, Addr: r.addr(x.name), Port: x.port, State: x.state})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Node, b.Node) })
	return out
}

func (r *roleLayers) Changes() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members
}

// membershipChanged wakes the subscribers; r.mu held.
func (r *roleLayers) membershipChanged() {
	close(r.members)
	r.members = make(chan struct{})
}

// Membership is who serves which role, for the balancer; false when the
// controller renders no role layers.
func (c *Controller) Membership() (Membership, bool) {
	return firstComponent[Membership](c)
}
