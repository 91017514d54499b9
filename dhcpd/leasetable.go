package dhcpd

import (
	"errors"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"time"
)

var (
	errNoAddress    = errors.New("no free address in the pool")
	errAddressTaken = errors.New("address belongs to another client")
	errNotInSubnet  = errors.New("address is not on the client's subnet")
)

// leaseTable is the in-memory view of the lease bucket plus the offers
// made (offers are not durable: a client whose offer was lost in a restart
// gets a NAK or a new offer). Every address decision is taken under mu, so
// an address is never promised to two clients; the record goes to disk
// before the ACK is sent.
type leaseTable struct {
	mu         sync.Mutex
	byIP       map[netip.Addr]*Lease
	byMAC      map[hwKey]*Lease
	offers     map[netip.Addr]*offer
	offerByMAC map[hwKey]*offer
	pools      []*pool
	timers     expiryHeap
	nodes      Nodes
}

type offer struct {
	ip    netip.Addr
	mac   hwKey
	until time.Time
	class Class
}

// pool tracks one Range: a bit per address, set while the address may not
// go to a new client (active lease, live offer, declined); the cursor makes
// allocation walk the range round-robin so a freed address is reused last.
type pool struct {
	first, last uint32
	used        []uint64
	cursor      uint32
	exclude     []uint32 // network, broadcast, server and router addresses
}

func newLeaseTable(nodes Nodes) *leaseTable {
	return &leaseTable{
		byIP:       make(map[netip.Addr]*Lease),
		byMAC:      make(map[hwKey]*Lease),
		offers:     make(map[netip.Addr]*offer),
		offerByMAC: make(map[hwKey]*offer),
		nodes:      nodes,
	}
}

// load replaces the records with leases (from the store).
func (t *leaseTable) load(leases []Lease, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range leases {
		l := leases[i]
		t.byIP[l.IP] = &l
		t.timers.push(l.Expires, l.IP)
		if l.State == LeaseDeclined {
			continue
		}
		k := keyOf(l.MAC)
		if cur := t.byMAC[k]; cur == nil || l.Granted.After(cur.Granted) {
			t.byMAC[k] = &l
		}
	}
	for _, p := range t.pools {
		t.fillPool(p, now)
	}
}

// setPools replaces the pools (start-up, reconfiguration).
func (t *leaseTable) setPools(subnets []subnetSettings, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pools = t.pools[:0]
	for i := range subnets {
		s := &subnets[i]
		if s.Range.IsZero() {
			s.pool = nil
			continue
		}
		p := &pool{first: addrToU32(s.Range.First), last: addrToU32(s.Range.Last)}
		p.used = make([]uint64, (p.last-p.first)/64+1)
		for _, a := range []netip.Addr{s.Network.Addr(), lastAddr(s.Network), s.ServerIP, s.Router} {
			if a.IsValid() {
				p.exclude = append(p.exclude, addrToU32(a))
			}
		}
		t.fillPool(p, now)
		s.pool = p
		t.pools = append(t.pools, p)
	}
}

func (t *leaseTable) fillPool(p *pool, now time.Time) {
	clear(p.used)
	mark := func(ip netip.Addr) {
		if v := addrToU32(ip); p.contains(v) && t.held(ip, now) {
			p.set(v, true)
		}
	}
	for ip := range t.byIP {
		mark(ip)
	}
	for ip := range t.offers {
		mark(ip)
	}
	for _, x := range p.exclude {
		if p.contains(x) {
			p.set(x, true)
		}
	}
}

func (p *pool) contains(v uint32) bool { return v >= p.first && v <= p.last }

func (p *pool) set(v uint32, used bool) {
	i := v - p.first
	if used {
		p.used[i/64] |= 1 << (i % 64)
	} else {
		p.used[i/64] &^= 1 << (i % 64)
	}
}

func (p *pool) excluded(v uint32) bool { return slices.Contains(p.exclude, v) }

// next returns the first clear bit at or after from, wrapping once.
func (p *pool) next(from uint32) (uint32, bool) {
	size := p.last - p.first + 1
	off := (from - p.first) % size
	nw := len(p.used)
	pastEnd := uint64(0) // bits of the last word beyond the range
	if size%64 != 0 {
		pastEnd = ^uint64(0) << (size % 64)
	}
	word := func(i int) uint64 {
		if i == nw-1 {
			return p.used[i] | pastEnd
		}
		return p.used[i]
	}
	i := int(off / 64)
	w := word(i) | (1<<(off%64) - 1) // bits before from come last
	for k := 0; k <= nw; k++ {
		if w != ^uint64(0) {
			return p.first + uint32(i)*64 + uint32(bits.TrailingZeros64(^w)), true
		}
		i = (i + 1) % nw
		w = word(i)
	}
	return 0, false
}

func (t *leaseTable) poolOf(ip netip.Addr) *pool {
	v := addrToU32(ip)
	for _, p := range t.pools {
		if p.contains(v) {
			return p
		}
	}
	return nil
}

// refreshBit recomputes whether ip is held by someone.
func (t *leaseTable) refreshBit(ip netip.Addr, now time.Time) {
	p := t.poolOf(ip)
	if p == nil {
		return
	}
	v := addrToU32(ip)
	p.set(v, t.held(ip, now) || p.excluded(v))
}

// held reports whether ip is promised to some client right now.
func (t *leaseTable) held(ip netip.Addr, now time.Time) bool {
	if o := t.offers[ip]; o != nil && now.Before(o.until) {
		return true
	}
	if l := t.byIP[ip]; l != nil && l.State != LeaseReleased && now.Before(l.Expires) {
		return true
	}
	return false
}

// free reports whether ip may be given to mac (whose node is nodeName, ""
// for strangers).
func (t *leaseTable) free(ip netip.Addr, mac hwKey, nodeName string, now time.Time) bool {
	if o := t.offers[ip]; o != nil && o.mac != mac && now.Before(o.until) {
		return false
	}
	if l := t.byIP[ip]; l != nil && now.Before(l.Expires) {
		switch {
		case l.State == LeaseDeclined:
			return false
		case l.State == LeaseBound && keyOf(l.MAC) != mac:
			return false
		}
	}
	if t.nodes != nil {
		if n, ok := t.nodes.ByIP(ip); ok && n.Name != nodeName {
			return false
		}
	}
	return true
}

// offer picks an address for mac on subnet s and holds it until hold
// passes: the node's reservation, else the client's current or offered
// address, else the requested one, else the next free pool address.
func (t *leaseTable) offer(s *subnetSettings, mac hwKey, node Node, requested netip.Addr, class Class, now time.Time, hold time.Duration) (netip.Addr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	ip, err := t.choose(s, mac, node, requested, now)
	if err != nil {
		return ip, err
	}
	if o := t.offerByMAC[mac]; o != nil && o.ip != ip {
		t.dropOfferLocked(o, now)
	}
	o := &offer{ip: ip, mac: mac, until: now.Add(hold), class: class}
	t.offers[ip] = o
	t.offerByMAC[mac] = o
	t.timers.push(o.until, ip)
	t.refreshBit(ip, now)
	return ip, nil
}

func (t *leaseTable) choose(s *subnetSettings, mac hwKey, node Node, requested netip.Addr, now time.Time) (netip.Addr, error) {
	inRange := func(ip netip.Addr) bool {
		return ip.IsValid() && s.pool != nil && s.pool.contains(addrToU32(ip)) && !s.pool.excluded(addrToU32(ip))
	}
	if node.IP.IsValid() {
		if s.Network.Contains(node.IP) && t.free(node.IP, mac, node.Name, now) {
			return node.IP, nil
		}
		// The caller logs the conflict; the node gets a pool address.
	}
	if o := t.offerByMAC[mac]; o != nil && now.Before(o.until) && inRange(o.ip) && t.free(o.ip, mac, node.Name, now) {
		return o.ip, nil
	}
	if l := t.byMAC[mac]; l != nil && inRange(l.IP) && t.free(l.IP, mac, node.Name, now) {
		return l.IP, nil
	}
	if inRange(requested) && t.free(requested, mac, node.Name, now) {
		return requested, nil
	}
	p := s.pool
	if p == nil {
		return netip.Addr{}, errNoAddress
	}
	for tries := 0; tries < 2; tries++ {
		start := p.cursor
		if !p.contains(start) {
			start = p.first
		}
		for {
			v, ok := p.next(start)
			if !ok {
				break
			}
			ip := u32ToAddr(v)
			if t.free(ip, mac, node.Name, now) {
				p.cursor = v + 1
				return ip, nil
			}
			// Reserved for a node or otherwise taken: mark it and go on.
			p.set(v, true)
			start = v + 1
			if !p.contains(start) {
				start = p.first
			}
		}
		// Exhausted: recompute the pool (expired leases, reservations
		// dropped since) and look once more.
		t.expire(now)
		t.fillPool(p, now)
	}
	return netip.Addr{}, errNoAddress
}

// bind turns the client's claim on ip into a bound lease (in memory; the
// caller commits the returned record before answering).
func (t *leaseTable) bind(l Lease, node Node, now time.Time) (Lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mac := keyOf(l.MAC)
	if !t.free(l.IP, mac, node.Name, now) {
		return Lease{}, errAddressTaken
	}
	if o := t.offers[l.IP]; o != nil && o.mac == mac {
		t.dropOfferLocked(o, now)
	}
	if old := t.byIP[l.IP]; old != nil && keyOf(old.MAC) != mac {
		if k := keyOf(old.MAC); t.byMAC[k] == old {
			delete(t.byMAC, k)
		}
	}
	rec := l
	rec.State = LeaseBound
	t.byIP[l.IP] = &rec
	t.byMAC[mac] = &rec
	t.timers.push(rec.Expires, rec.IP)
	t.refreshBit(rec.IP, now)
	return rec, nil
}

// reuse returns mac's bound lease on ip if it was granted within maxAge
// (and is still active), dropping the offer that led to it.
func (t *leaseTable) reuse(ip netip.Addr, mac hwKey, node string, now time.Time, maxAge time.Duration) (Lease, bool) {
	if maxAge <= 0 {
		return Lease{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.byIP[ip]
	if l == nil || keyOf(l.MAC) != mac || l.State != LeaseBound || !now.Before(l.Expires) ||
		now.Sub(l.Granted) >= maxAge || l.Node != node {
		return Lease{}, false
	}
	if o := t.offers[ip]; o != nil && o.mac == mac {
		t.dropOfferLocked(o, now)
	}
	return *l, true
}

// current returns mac's lease on ip if it is active.
func (t *leaseTable) current(ip netip.Addr, mac hwKey, now time.Time) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.byIP[ip]
	if l == nil || keyOf(l.MAC) != mac || l.State != LeaseBound || !now.Before(l.Expires) {
		return Lease{}, false
	}
	return *l, true
}

// offered returns the live offer made to mac.
func (t *leaseTable) offered(mac hwKey, now time.Time) (offer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.offerByMAC[mac]
	if o == nil || !now.Before(o.until) {
		return offer{}, false
	}
	return *o, true
}

// isFree is free under the lock.
func (t *leaseTable) isFree(ip netip.Addr, mac hwKey, nodeName string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.free(ip, mac, nodeName, now)
}

// dropOffer forgets mac's offer (it chose another server).
func (t *leaseTable) dropOffer(mac hwKey, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o := t.offerByMAC[mac]; o != nil {
		t.dropOfferLocked(o, now)
	}
}

func (t *leaseTable) dropOfferLocked(o *offer, now time.Time) {
	if t.offers[o.ip] == o {
		delete(t.offers, o.ip)
	}
	if t.offerByMAC[o.mac] == o {
		delete(t.offerByMAC, o.mac)
	}
	t.refreshBit(o.ip, now)
}

// release ends mac's lease on ip; the returned record is to be committed.
func (t *leaseTable) release(ip netip.Addr, mac hwKey, now time.Time) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.byIP[ip]
	if l == nil || keyOf(l.MAC) != mac || l.State != LeaseBound {
		return Lease{}, false
	}
	rec := *l
	rec.State, rec.Expires = LeaseReleased, now
	t.byIP[ip] = &rec
	t.byMAC[mac] = &rec
	t.refreshBit(ip, now)
	return rec, true
}

// decline quarantines ip until until; only the address's holder (lease or
// offer) may decline it, so a stranger cannot take addresses out of the pool.
func (t *leaseTable) decline(ip netip.Addr, mac hwKey, now, until time.Time) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.byIP[ip]
	o := t.offers[ip]
	holder := (l != nil && keyOf(l.MAC) == mac && l.State == LeaseBound) || (o != nil && o.mac == mac)
	if !holder {
		return Lease{}, false
	}
	if o != nil {
		t.dropOfferLocked(o, now)
	}
	if l != nil && t.byMAC[mac] == l {
		delete(t.byMAC, mac)
	}
	rec := Lease{IP: ip, State: LeaseDeclined, Expires: until, Granted: now}
	t.byIP[ip] = &rec
	t.timers.push(until, ip)
	t.refreshBit(ip, now)
	return rec, true
}

// expire frees addresses whose offer, lease or quarantine ran out.
func (t *leaseTable) expire(now time.Time) {
	for n := now.UnixNano(); t.timers.due(n); {
		ip := u32ToAddr(t.timers.pop().ip)
		if o := t.offers[ip]; o != nil && !now.Before(o.until) {
			t.dropOfferLocked(o, now)
		}
		t.refreshBit(ip, now)
	}
}

// sweep is expire for the periodic timer.
func (t *leaseTable) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
}

// snapshot returns a copy of every record.
func (t *leaseTable) snapshot() []Lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Lease, 0, len(t.byIP))
	for _, l := range t.byIP {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out
}

// counts returns the number of active leases and live offers.
func (t *leaseTable) counts(now time.Time) (active, offers int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.byIP {
		if l.Active(now) {
			active++
		}
	}
	for _, o := range t.offers {
		if now.Before(o.until) {
			offers++
		}
	}
	return active, offers
}

// expiry is a pending expiry: a Unix-nanosecond deadline and an IPv4
// address as a number. It holds no pointers, so the heap (two entries per
// lease granted, hundreds of thousands under load) costs the garbage
// collector nothing to scan.
type expiry struct {
	when int64
	ip   uint32
}

// expiryHeap is a binary min-heap of pending expiries by deadline; entries
// are checked against the current record when they come due, so stale
// ones cost nothing. It is typed rather than a container/heap: that
// interface boxes every pushed and popped entry, an allocation each.
type expiryHeap []expiry

func (h *expiryHeap) push(when time.Time, ip netip.Addr) {
	*h = append(*h, expiry{when: when.UnixNano(), ip: addrToU32(ip)})
	q := *h
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if q[parent].when <= q[i].when {
			break
		}
		q[parent], q[i] = q[i], q[parent]
		i = parent
	}
}

// due reports whether the earliest entry's deadline is at or before now.
func (h expiryHeap) due(now int64) bool { return len(h) > 0 && h[0].when <= now }

func (h *expiryHeap) pop() expiry {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(q) {
			break
		}
		m := l
		if r := l + 1; r < len(q) && q[r].when < q[l].when {
			m = r
		}
		if q[i].when <= q[m].when {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

func lastAddr(p netip.Prefix) netip.Addr {
	v := addrToU32(p.Masked().Addr())
	return u32ToAddr(v | (1<<(32-p.Bits()) - 1))
}
