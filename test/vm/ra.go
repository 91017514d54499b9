package vm

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// RouterAdvertiser answers IPv6 router solicitations on the test bridge.
//
// iPXE's network configuration waits for every configurator, IPv6 router
// discovery included: without an answer it sends router solicitations for
// ~13 s before it uses its DHCPv4 lease (recipe pitfall 1). One router
// advertisement — router lifetime 0, no prefix, no flags — ends that wait.
// The product is meant to answer them itself on its boot interface; a test
// whose server does not can start this responder instead.
type RouterAdvertiser struct {
	conn *icmp.PacketConn
	sent atomic.Int64
	done chan struct{}
}

// StartRouterAdvertiser enables IPv6 (without DAD, so its link-local address
// is usable at once) on the bridge only and answers each router solicitation
// there with one router advertisement, until the test ends.
func (n *Net) StartRouterAdvertiser() *RouterAdvertiser {
	n.t.Helper()
	n.NS.MustExec("sysctl", "-qw",
		"net.ipv6.conf."+n.Bridge+".accept_dad=0",
		"net.ipv6.conf."+n.Bridge+".disable_ipv6=0")
	ra := &RouterAdvertiser{done: make(chan struct{})}
	var ifi *net.Interface
	err := n.NS.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByName(n.Bridge); err != nil {
			return err
		}
		if ra.conn, err = icmp.ListenPacket("ip6:ipv6-icmp", "::"); err != nil {
			return err
		}
		p := ra.conn.IPv6PacketConn()
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeRouterSolicitation)
		if err := p.SetICMPFilter(&f); err != nil {
			return err
		}
		if err := p.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}); err != nil {
			return fmt.Errorf("join all-routers: %w", err)
		}
		if err := p.SetMulticastHopLimit(255); err != nil {
			return err
		}
		if err := p.SetHopLimit(255); err != nil {
			return err
		}
		return p.SetControlMessage(ipv6.FlagInterface, true)
	})
	if err != nil {
		if ra.conn != nil {
			ra.conn.Close()
		}
		n.t.Fatalf("vm: router advertiser on %s: %v", n.Bridge, err)
	}
	go ra.serve(ifi)
	n.t.Cleanup(func() {
		ra.conn.Close()
		<-ra.done
	})
	return ra
}

// Sent is the number of router advertisements sent so far.
func (ra *RouterAdvertiser) Sent() int64 { return ra.sent.Load() }

func (ra *RouterAdvertiser) serve(ifi *net.Interface) {
	defer close(ra.done)
	p := ra.conn.IPv6PacketConn()
	// cur hop limit, flags, router lifetime (0: not a default router),
	// reachable time, retransmit timer: all zero.
	body, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: make([]byte, 12)}}).Marshal(nil)
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := p.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < 4 || ipv6.ICMPType(buf[0]) != ipv6.ICMPTypeRouterSolicitation || (cm != nil && cm.IfIndex != ifi.Index) {
			continue
		}
		dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: ifi.Name}
		if a, ok := src.(*net.IPAddr); ok && a.IP.IsLinkLocalUnicast() {
			dst = &net.IPAddr{IP: a.IP, Zone: ifi.Name}
		}
		if _, err := p.WriteTo(body, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifi.Index}, dst); err == nil {
			ra.sent.Add(1)
		}
	}
}
