package balancer

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Policy names (Config.Policy).
const (
	LeastConnections = "least-connections"
	RoundRobin       = "round-robin"
)

// picker chooses a member for a new request. Weighted least-connections
// compares in-flight/weight; round-robin is nginx's smooth weighted
// round-robin. Members in tried are skipped (retries go elsewhere).
type picker struct {
	roundRobin bool
	rotate     atomic.Uint32 // breaks least-connections ties evenly
	rrMu       sync.Mutex
}

func newPicker(policy string) (*picker, error) {
	switch policy {
	case "", LeastConnections:
		return &picker{}, nil
	case RoundRobin:
		return &picker{roundRobin: true}, nil
	}
	return nil, fmt.Errorf("balancer policy %q: want %s or %s", policy, LeastConnections, RoundRobin)
}

func tried(b *backend, skip []*backend) bool {
	for _, s := range skip {
		if s == b {
			return true
		}
	}
	return false
}

func (p *picker) pick(members []*backend, skip []*backend, now int64) *backend {
	if len(members) == 0 {
		return nil
	}
	if p.roundRobin {
		return p.pickRoundRobin(members, skip, now)
	}
	n := len(members)
	start := int(p.rotate.Add(1)) % n
	var best *backend
	var bestLoad, bestWeight int64
	for i := 0; i < n; i++ {
		b := members[(start+i)%n]
		if !b.usable(now) || tried(b, skip) {
			continue
		}
		load, w := b.inflight.Load(), b.weight.Load()
		// load/w < bestLoad/bestWeight without division.
		if best == nil || load*bestWeight < bestLoad*w {
			best, bestLoad, bestWeight = b, load, w
		}
	}
	return best
}

func (p *picker) pickRoundRobin(members []*backend, skip []*backend, now int64) *backend {
	p.rrMu.Lock()
	defer p.rrMu.Unlock()
	var best *backend
	total := 0
	for _, b := range members {
		if !b.usable(now) || tried(b, skip) {
			continue
		}
		w := int(b.weight.Load())
		b.rrCurrent += w
		total += w
		if best == nil || b.rrCurrent > best.rrCurrent {
			best = b
		}
	}
	if best != nil {
		best.rrCurrent -= total
	}
	return best
}
