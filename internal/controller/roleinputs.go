package controller

import (
	"context"
	"maps"
	"net/netip"
	"time"

	"github.com/pictl/pictl/internal/cluster"
)

// defaultAddressPoll is how often the role layers compare the nodes'
// addresses with the ones their trees were rendered with.
const defaultAddressPoll = 2 * time.Second

// nodeAddrs is every node's address as the one NodeAddress answers it.
func (r *roleLayers) nodeAddrs(cl *cluster.Cluster) map[string]netip.Addr {
	out := make(map[string]netip.Addr, len(cl.Nodes))
	for name := range cl.Nodes {
		out[name] = r.addr(name)
	}
	return out
}

// followAddresses renders every node again when a node's address differs
// from the one the last render used: templates name addresses (the db
// node's bind-address, the lb nodes' HAProxy servers and VRRP peers), and
// an address changes without cluster.yaml changing (a node without a
// reservation gets its first lease). The sources (leases, TFTP and NFS
// sightings) send no change notice, so this compares a snapshot; only the
// nodes whose trees change get a new layer, and their agents reload the
// units (HAProxy gracefully) rather than switch.
func (r *roleLayers) followAddresses(ctx context.Context) {
	every := r.addressPoll
	if every <= 0 {
		every = defaultAddressPoll
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cl := r.cluster()
		if cl == nil {
			continue
		}
		now := r.nodeAddrs(cl)
		r.mu.Lock()
		same := maps.Equal(now, r.renderedAddrs)
		r.mu.Unlock()
		if same {
			continue
		}
		r.log.Info("node addresses changed; rendering again")
		if err := r.Reload(ctx, cl); err != nil {
			r.log.Error("rendering role layers failed", "err", err)
		}
	}
}
