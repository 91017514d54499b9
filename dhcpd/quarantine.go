package dhcpd

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// A DHCPDECLINE says "this address is in use by another host": the address
// is quarantined for DeclineHold. For an address reserved to a node that is
// wrong twice over: the DECLINE is forged as easily as any packet on the
// boot network (it carries only the client's own claim of its MAC), and a
// quarantined reservation leaves the node with no address at all. So a
// DECLINE of a reserved address is logged and ignored; the person fixes
// the conflict. ClearQuarantine (pictl node clear-quarantine) frees any
// quarantined address early, e.g. one quarantined before this rule.

// outDeclineIgnored: a DECLINE of a node's reserved address.
const outDeclineIgnored = "decline_ignored"

// declineOfReserved reports (and logs) a DECLINE of a reserved address.
func (s *Server) declineOfReserved(r *request, ip netip.Addr) bool {
	n, ok := s.nodes.ByIP(ip)
	if !ok {
		return false
	}
	from := "another client"
	if r.known && r.node.Name == n.Name {
		from = "the node's MAC (which anyone can claim)"
	}
	s.log.Warn("DHCPDECLINE of a reserved address ignored: if another host really uses it, move that host or the reservation",
		"ip", ip.String(), "node", n.Name, "mac", r.pkt.chaddr.String(), "from", from)
	return true
}

// ErrNotQuarantined: ClearQuarantine found no quarantine on the address.
var ErrNotQuarantined = errors.New("address is not quarantined")

// ClearQuarantine ends the quarantine of a declined address now, and waits
// until that is on disk.
func (s *Server) ClearQuarantine(ip netip.Addr) error {
	now := s.cfg.Load().Now()
	l, ok := s.leases.clearQuarantine(ip.Unmap(), now)
	if !ok {
		return fmt.Errorf("%s: %w", ip, ErrNotQuarantined)
	}
	done := make(chan error, 1)
	s.committer.submit(commitOp{lease: &l, done: func(err error, _ bool) { done <- err }})
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("clear quarantine of %s: %w", ip, err)
		}
	case <-time.After(30 * time.Second):
		return fmt.Errorf("clear quarantine of %s: not committed within 30 s", ip)
	}
	s.log.Info("address quarantine cleared", "ip", ip.String())
	return nil
}

// Quarantined lists the addresses quarantined now, with their end.
func (s *Server) Quarantined() map[netip.Addr]time.Time {
	now := s.cfg.Load().Now()
	out := map[netip.Addr]time.Time{}
	for _, l := range s.leases.snapshot() {
		if l.State == LeaseDeclined && now.Before(l.Expires) {
			out[l.IP] = l.Expires
		}
	}
	return out
}

func (t *leaseTable) clearQuarantine(ip netip.Addr, now time.Time) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.byIP[ip]
	if l == nil || l.State != LeaseDeclined || !now.Before(l.Expires) {
		return Lease{}, false
	}
	rec := Lease{IP: ip, State: LeaseReleased, Expires: now, Granted: now}
	t.byIP[ip] = &rec
	t.refreshBit(ip, now)
	return rec, true
}
