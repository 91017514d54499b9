package dhcpd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// OtherServer is a DHCP server that answered the start-up probe.
type OtherServer struct {
	Interface string
	ServerID  netip.Addr
	Offered   netip.Addr
	Seen      time.Time
}

// prober sends one DHCPDISCOVER per served interface at start-up (full
// mode) and reports every server that answers: two servers handing out
// addresses on one segment give clients conflicting leases.
type prober struct {
	socks []probeSock
	mu    sync.Mutex
	found []OtherServer
}

type probeSock struct {
	conn *net.UDPConn
	ifc  *ifaceInfo
	xid  dhcpv4.TransactionID
}

func (s *Server) openProber(cfg *settings) (*prober, error) {
	p := &prober{}
	for _, ifc := range s.ifaces.all() {
		if ifc.loopback || !ifc.up || len(ifc.mac) != 6 || len(ifc.addrs) == 0 {
			continue
		}
		if len(s.ifIndexes) > 0 && !s.ifIndexes[ifc.index] {
			continue
		}
		conn, err := server4.NewIPv4UDPConn(ifc.name, &net.UDPAddr{Port: dhcpv4.ClientPort})
		if err != nil {
			// A DHCP client on this host holds port 68: serve anyway.
			s.log.Warn("cannot probe for other DHCP servers", "interface", ifc.name, "error", err)
			continue
		}
		xid, err := dhcpv4.GenerateTransactionID()
		if err != nil {
			conn.Close()
			p.close()
			return nil, err
		}
		p.socks = append(p.socks, probeSock{conn: conn, ifc: ifc, xid: xid})
	}
	return p, nil
}

func (p *prober) close() {
	for _, s := range p.socks {
		s.conn.Close()
	}
}

// isProbe reports whether pkt is our own probe, looped back to our socket.
func (s *Server) isProbe(pkt *packet) bool {
	if s.prober == nil {
		return false
	}
	for _, ps := range s.prober.socks {
		if pkt.xid == ps.xid && bytes.Equal(pkt.chaddr, ps.ifc.mac) {
			return true
		}
	}
	return false
}

func (s *Server) runProbe(ctx context.Context, p *prober) {
	timeout := s.cfg.Load().ProbeTimeout
	var wg sync.WaitGroup
	for _, ps := range p.socks {
		wg.Go(func() {
			defer ps.conn.Close()
			s.probeInterface(ctx, p, ps, timeout)
		})
	}
	wg.Wait()
}

func (s *Server) probeInterface(ctx context.Context, p *prober, ps probeSock, timeout time.Duration) {
	msg, err := dhcpv4.NewDiscovery(ps.ifc.mac, dhcpv4.WithTransactionID(ps.xid), dhcpv4.WithBroadcast(true))
	if err != nil {
		return
	}
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	if _, err := ps.conn.WriteTo(msg.ToBytes(), dst); err != nil {
		s.log.Warn("could not probe for other DHCP servers", "interface", ps.ifc.name, "error", err)
		return
	}
	deadline := time.Now().Add(timeout)
	stop := context.AfterFunc(ctx, func() { ps.conn.SetReadDeadline(time.Now()) })
	defer stop()
	_ = ps.conn.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, _, err := ps.conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			return
		}
		rep, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || rep.OpCode != dhcpv4.OpcodeBootReply || rep.TransactionID != ps.xid {
			continue
		}
		sid := addrOf(rep.ServerIdentifier())
		if !sid.IsValid() {
			sid = addrOf(rep.ServerIPAddr)
		}
		if s.isLocal(sid, 0) {
			continue
		}
		o := OtherServer{Interface: ps.ifc.name, ServerID: sid, Offered: addrOf(rep.YourIPAddr), Seen: time.Now()}
		p.mu.Lock()
		p.found = append(p.found, o)
		count := len(p.found)
		p.mu.Unlock()
		s.metrics.rogue.Set(float64(count))
		s.log.Warn("ANOTHER DHCP SERVER ANSWERS ON THIS NETWORK: clients may get addresses from it instead of pictl; "+
			"turn it off or run pictl with dhcp mode proxy",
			"interface", o.Interface, "server", o.ServerID.String(), "offered", o.Offered.String())
	}
}

// OtherServers returns the DHCP servers that answered the start-up probe.
func (s *Server) OtherServers() []OtherServer {
	if s.prober == nil {
		return nil
	}
	s.prober.mu.Lock()
	defer s.prober.mu.Unlock()
	return append([]OtherServer(nil), s.prober.found...)
}
