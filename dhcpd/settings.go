package dhcpd

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// settings is a validated Config with the option bytes every reply needs
// encoded once; the server swaps it atomically on Reconfigure.
type settings struct {
	Config
	subnets []subnetSettings
	// leaseBytes etc. are options 51, 58 and 59.
	leaseBytes, t1Bytes, t2Bytes []byte
	piVendor                     []byte
}

type subnetSettings struct {
	Subnet
	pool *pool
	// encoded options 1, 3, 6, 15 (nil when unset)
	maskBytes, routerBytes, dnsBytes, domainBytes []byte
}

func compile(cfg Config) (*settings, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &settings{Config: cfg, piVendor: PiVendorOptions(true)}
	secs := func(f float64) []byte {
		return binary.BigEndian.AppendUint32(nil, uint32(cfg.LeaseTime.Seconds()*f))
	}
	s.leaseBytes, s.t1Bytes, s.t2Bytes = secs(1), secs(0.5), secs(0.875)
	for _, sub := range cfg.Subnets {
		ss := subnetSettings{Subnet: sub}
		m := ^uint32(0) << (32 - sub.Network.Bits())
		ss.maskBytes = binary.BigEndian.AppendUint32(nil, m)
		if sub.Router.IsValid() {
			ss.routerBytes = slices.Clone(ipKey(sub.Router))
		}
		for _, d := range sub.DNS {
			ss.dnsBytes = append(ss.dnsBytes, ipKey(d)...)
		}
		if sub.Domain != "" {
			ss.domainBytes = []byte(sub.Domain)
		}
		s.subnets = append(s.subnets, ss)
	}
	return s, nil
}

// subnetFor selects the subnet of a packet: by giaddr when relayed, else by
// the ingress interface (its name, then its addresses).
func (s *settings) subnetFor(giaddr netip.Addr, ifc *ifaceInfo) *subnetSettings {
	if giaddr.IsValid() && !giaddr.IsUnspecified() {
		for i := range s.subnets {
			if s.subnets[i].Network.Contains(giaddr) {
				return &s.subnets[i]
			}
		}
		return nil
	}
	if ifc == nil {
		return nil
	}
	for i := range s.subnets {
		if s.subnets[i].Interface != "" && s.subnets[i].Interface == ifc.name {
			return &s.subnets[i]
		}
	}
	for i := range s.subnets {
		if s.subnets[i].Interface != "" {
			continue
		}
		for _, a := range ifc.addrs {
			if s.subnets[i].Network.Contains(a.Addr()) {
				return &s.subnets[i]
			}
		}
	}
	return nil
}

// serverIPFor is the address the reply names as server (option 54,
// siaddr): the subnet's, else the ingress interface's address on the
// subnet, else Config.ServerIP, else the interface's first IPv4 address.
func (s *settings) serverIPFor(sub *subnetSettings, ifc *ifaceInfo, relayed bool) netip.Addr {
	if sub != nil && sub.ServerIP.IsValid() {
		return sub.ServerIP
	}
	if sub != nil && ifc != nil && !relayed {
		for _, a := range ifc.addrs {
			if sub.Network.Contains(a.Addr()) {
				return a.Addr()
			}
		}
	}
	if s.ServerIP.IsValid() {
		if relayed || ifc == nil || ifc.has(s.ServerIP) {
			return s.ServerIP
		}
	}
	if ifc != nil && len(ifc.addrs) > 0 {
		return ifc.addrs[0].Addr()
	}
	return s.ServerIP
}
