package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pictl/pictl/dhcpd"
	"github.com/pictl/pictl/internal/api"
)

// QuarantineClearer is implemented by the DHCP server: it quarantines
// addresses a client declined.
type QuarantineClearer interface {
	ClearQuarantine(ip netip.Addr) error
}

// ClearQuarantine ends the DHCPDECLINE quarantine of a node's reserved
// address (target is a node name) or of an address (target is one).
func (c *Controller) ClearQuarantine(_ context.Context, target string) (api.Cleared, error) {
	res := api.Cleared{Target: target}
	ip, err := netip.ParseAddr(target)
	if err != nil {
		n, ok := c.Cluster().Nodes[target]
		if !ok {
			return res, &UnknownNodeError{Name: target}
		}
		if !n.IP.IsValid() {
			return res, fmt.Errorf("node %s has no reserved address (ip:); name the quarantined address instead", target)
		}
		ip = n.IP
	}
	res.Address = ip.String()
	clearers := componentsAs[QuarantineClearer](c)
	if len(clearers) == 0 {
		return res, errors.New("this controller runs no DHCP server, so no address is quarantined")
	}
	switch err := clearers[0].ClearQuarantine(ip); {
	case errors.Is(err, dhcpd.ErrNotQuarantined):
		return res, nil
	case err != nil:
		return res, err
	}
	res.WasQuarantined = true
	return res, nil
}
