package controller

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// addrMACs remembers, for a short while, which MAC the lease table or the
// neighbour table gave for a client address. nfsd asks on every NFS call
// whether the caller may use the export its handle names; for a node
// without a reservation that meant copying the lease table, and in proxy
// mode reading /proc/net/arp (three syscalls), per call. knfsd keeps the
// same answer (its ip-to-client cache) for minutes; here a lease or
// neighbour change is seen within addrMACTTL.
type addrMACs struct {
	mu  sync.Mutex
	m   map[netip.Addr]addrMAC
	now func() time.Time // nil: time.Now
}

type addrMAC struct {
	mac   net.HardwareAddr // nil: neither table knew the address
	until time.Time
}

const (
	addrMACTTL = 2 * time.Second
	// An address nobody knows is asked again sooner: a node whose lease
	// was just bound must not wait for a stale "unknown".
	addrUnknownTTL = 250 * time.Millisecond
	// Bounds the memory a client cycling through addresses can take.
	maxAddrMACs = 4096
)

// lookup returns the MAC resolve gives for addr, from memory while fresh.
func (c *addrMACs) lookup(addr netip.Addr, resolve func() net.HardwareAddr) net.HardwareAddr {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	t := now()
	c.mu.Lock()
	e, ok := c.m[addr]
	c.mu.Unlock()
	if ok && t.Before(e.until) {
		return e.mac
	}
	mac := resolve()
	ttl := addrMACTTL
	if mac == nil {
		ttl = addrUnknownTTL
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxAddrMACs {
		c.m = make(map[netip.Addr]addrMAC)
	}
	c.m[addr] = addrMAC{mac: mac, until: t.Add(ttl)}
	c.mu.Unlock()
	return mac
}
