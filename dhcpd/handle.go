package dhcpd

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// packetIn is one datagram as the socket delivered it.
type packetIn struct {
	data     []byte
	ifIndex  int
	src      netip.AddrPort
	port     int // local port: Config.Port, or ProxyPort
	received time.Time
}

// reply is what handle decided to send.
type reply struct {
	msg     replyMsg
	dst     netip.AddrPort
	ifIndex int        // set for broadcasts: leave by the ingress interface
	src     netip.Addr // preferred source address (our server identifier)
	delay   time.Duration
	// commit, when set, must be durable before the reply is sent.
	commit *Lease
	// reqType, class and outcome are for the metrics.
	reqType  dhcpv4.MessageType
	class    Class
	outcome  string
	received time.Time
	conn     *dhcpConn // the socket the request came in on
	wire     []byte    // msg encoded, once it is final
	sid      [4]byte   // option 54's value
	bufs     [1][]byte // the datagram's buffer list, for sendBatch
}

// request bundles what every decision needs.
type request struct {
	pkt     *packet // &p
	typ     dhcpv4.MessageType
	client  Client
	mac     hwKey
	node    Node
	known   bool
	ifc     *ifaceInfo
	in      *packetIn
	cfg     *settings
	now     time.Time
	relayed bool
	inv     packetIn // *in, without the data
	p       packet
}

var (
	broadcastClient = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), dhcpv4.ClientPort)
)

// handle decides what to do with one packet. It never panics on bad input:
// anything that does not parse is counted and dropped.
// A nil request means the packet did not parse (it was counted as
// malformed).
func (s *Server) handle(in *packetIn) (*reply, *request, string) {
	cfg := s.cfg.Load()
	// The request carries its own copies of in and the datagram: in.data
	// is the reader's buffer, reused by the next read, and one allocation
	// per packet is all handle costs the garbage collector.
	r := &request{inv: *in, cfg: cfg}
	r.in, r.pkt = &r.inv, &r.p
	r.inv.data = nil
	pkt := r.pkt
	if err := parseRequest(pkt, in.data); err != nil || pkt.op != dhcpv4.OpcodeBootRequest || len(pkt.chaddr) == 0 {
		s.metrics.malformed.Inc()
		return nil, nil, ""
	}
	r.typ, r.mac, r.now = pkt.messageType(), keyOf(pkt.chaddr), cfg.Now()
	if s.ifaces != nil {
		r.ifc = s.ifaces.get(in.ifIndex)
	}
	rep, outcome := s.decide(r)
	return rep, r, outcome
}

func (s *Server) decide(r *request) (*reply, string) {
	cfg, pkt, typ, in := r.cfg, r.pkt, r.typ, r.in
	if typ == dhcpv4.MessageTypeNone {
		return nil, outUnsupported // plain BOOTP
	}
	if s.isProbe(pkt) {
		return nil, outNotForUs
	}
	if !s.servesInterface(r.ifc) {
		return nil, outNotForUs
	}
	r.client = classify(pkt.chaddr, pkt)
	// DECLINE and RELEASE get no reply and cost little; anyone can send
	// them with a node's MAC, and counting them would let a stranger use
	// up the node's allowance and keep it from booting.
	if typ != dhcpv4.MessageTypeDecline && typ != dhcpv4.MessageTypeRelease && !s.limiter.allow(r.mac, r.now) {
		return nil, outRateLimited
	}
	r.relayed = pkt.gateway().IsValid() && in != nil
	r.node, r.known = s.nodes.ByMAC(pkt.chaddr)

	// A Pi 4 REQUEST may lack option 60 (rpi-eeprom#87): it is still the
	// bootloader we offered to, not the OS.
	if r.client.Class == ClassOS && typ == dhcpv4.MessageTypeRequest {
		if o, ok := s.leases.offered(r.mac, r.now); ok && o.class.Boots() {
			r.client.Class = o.class
		}
	}
	if r.client.Class.Boots() && !r.known {
		if cfg.Discovery == DiscoveryIgnore {
			return nil, outPolicyIgnore
		}
		s.recordDiscovered(r)
	}
	if cfg.Mode == ModeProxy {
		return s.handleProxy(r)
	}
	return s.handleFull(r)
}

// mayBoot says whether we answer r's boot firmware at all.
func (r *request) mayBoot() bool {
	if r.known {
		return r.node.Netboot
	}
	return r.cfg.Discovery == DiscoveryBoot
}

func (s *Server) handleFull(r *request) (*reply, string) {
	cfg := r.cfg
	boots := r.client.Class.Boots()
	if boots && !r.mayBoot() {
		return nil, outNotAllowed
	}
	if !boots && !r.known && cfg.IgnoreOthers {
		return nil, outIgnoredOther
	}
	giaddr := r.pkt.gateway()
	sub := cfg.subnetFor(giaddr, r.ifc)
	if sub == nil {
		return nil, outNoSubnet
	}
	serverIP := cfg.serverIPFor(sub, r.ifc, r.relayed)
	switch r.typ {
	case dhcpv4.MessageTypeDiscover:
		return s.discover(r, sub, serverIP)
	case dhcpv4.MessageTypeRequest:
		return s.request(r, sub, serverIP)
	case dhcpv4.MessageTypeDecline:
		return s.decline(r, serverIP)
	case dhcpv4.MessageTypeRelease:
		return s.release(r, serverIP)
	case dhcpv4.MessageTypeInform:
		rep := s.newReply(r, dhcpv4.MessageTypeAck, serverIP)
		rep.msg.ciaddr = r.pkt.clientIP()
		s.addNetworkOptions(&rep.msg, r, sub, serverIP, false)
		s.addBootOptions(&rep.msg, r, serverIP)
		return rep, outAck
	}
	return nil, outUnsupported
}

func (s *Server) discover(r *request, sub *subnetSettings, serverIP netip.Addr) (*reply, string) {
	node := r.node
	if !r.known {
		node = Node{}
	}
	requested := r.pkt.requested()
	ip, err := s.leases.offer(sub, r.mac, node, requested, r.client.Class, r.now, r.cfg.OfferHold)
	if err != nil {
		s.log.Warn("no address to offer", "mac", r.pkt.chaddr.String(), "node", node.Name, "subnet", sub.Network.String(), "error", err)
		return nil, outNoAddress
	}
	if node.IP.IsValid() && ip != node.IP {
		s.log.Warn("reserved address unavailable, offering a pool address", "node", node.Name, "mac", r.pkt.chaddr.String(), "reserved", node.IP.String(), "offered", ip.String())
	}
	rep := s.newReply(r, dhcpv4.MessageTypeOffer, serverIP)
	rep.msg.yiaddr = ip
	s.addNetworkOptions(&rep.msg, r, sub, serverIP, true)
	s.addBootOptions(&rep.msg, r, serverIP)
	rep.delay = r.cfg.ReplyDelay[r.client.Class]
	if r.client.Class.neverRequests() {
		// The Pi 3 ROM boots from the OFFER: it is a lease. It repeats
		// its DISCOVER every few seconds: reuse the lease then.
		if l, ok := s.leases.reuse(ip, r.mac, node.Name, r.now, s.reuseAge(r.cfg)); ok {
			setLeaseTimes(&rep.msg, l.Expires.Sub(r.now))
			return rep, outOffer
		}
		l, err := s.leases.bind(s.leaseFor(r, ip), node, r.now)
		if err != nil {
			return nil, outNoAddress
		}
		rep.commit = &l
	}
	return rep, outOffer
}

// request handles DHCPREQUEST in its four RFC 2131 §4.3.2 states.
func (s *Server) request(r *request, sub *subnetSettings, serverIP netip.Addr) (*reply, string) {
	pkt := r.pkt
	sid := pkt.serverID()
	requested := pkt.requested()
	ciaddr := pkt.clientIP()
	var ip netip.Addr
	switch {
	case sid.IsValid(): // SELECTING
		if sid != serverIP && (r.ifc == nil || !r.ifc.has(sid)) {
			s.leases.dropOffer(r.mac, r.now)
			return nil, outOtherServer
		}
		ip = requested
		if !ip.IsValid() {
			ip = ciaddr
		}
	case requested.IsValid(): // INIT-REBOOT
		ip = requested
	case ciaddr.IsValid(): // RENEWING (unicast) or REBINDING (broadcast)
		ip = ciaddr
	default:
		return s.nak(r, serverIP, "no address requested")
	}
	if !ip.IsValid() {
		return s.nak(r, serverIP, "no address requested")
	}
	if !sub.Network.Contains(ip) {
		return s.nak(r, serverIP, "wrong network")
	}
	node := r.node
	if !r.known {
		node = Node{}
	}
	if !s.acceptable(r, sub, node, ip) {
		return s.nak(r, serverIP, "address not available")
	}
	rep := s.newReply(r, dhcpv4.MessageTypeAck, serverIP)
	rep.msg.yiaddr = ip
	rep.msg.ciaddr = pkt.clientIP()
	s.addNetworkOptions(&rep.msg, r, sub, serverIP, true)
	s.addBootOptions(&rep.msg, r, serverIP)
	if l, ok := s.leases.reuse(ip, r.mac, node.Name, r.now, s.reuseAge(r.cfg)); ok {
		// Already on disk: grant what is left of it, write nothing.
		setLeaseTimes(&rep.msg, l.Expires.Sub(r.now))
		return rep, outAck
	}
	l, err := s.leases.bind(s.leaseFor(r, ip), node, r.now)
	if err != nil {
		return s.nak(r, serverIP, "address in use")
	}
	rep.commit = &l
	return rep, outAck
}

func (s *Server) reuseAge(cfg *settings) time.Duration {
	return time.Duration(cfg.LeaseReuse * float64(cfg.LeaseTime))
}

// setLeaseTimes sets options 51, 58 and 59 for a lease of d.
func setLeaseTimes(m *replyMsg, d time.Duration) {
	secs := uint32(d / time.Second)
	m.set(dhcpv4.OptionIPAddressLeaseTime.Code(), binary.BigEndian.AppendUint32(nil, secs))
	m.set(dhcpv4.OptionRenewTimeValue.Code(), binary.BigEndian.AppendUint32(nil, secs/2))
	m.set(dhcpv4.OptionRebindingTimeValue.Code(), binary.BigEndian.AppendUint32(nil, secs/8*7))
}

// acceptable says whether a client may have ip: a node's reservation (or,
// while the reservation is held by someone else, the pool), a pool address.
func (s *Server) acceptable(r *request, sub *subnetSettings, node Node, ip netip.Addr) bool {
	if node.IP.IsValid() && sub.Network.Contains(node.IP) {
		if ip == node.IP {
			return true
		}
		if s.leases.isFree(node.IP, r.mac, node.Name, r.now) {
			return false // it must move to its reservation
		}
	}
	return sub.pool != nil && sub.pool.contains(addrToU32(ip)) && !sub.pool.excluded(addrToU32(ip))
}

func (s *Server) nak(r *request, serverIP netip.Addr, why string) (*reply, string) {
	rep := s.newReply(r, dhcpv4.MessageTypeNak, serverIP)
	rep.msg.set(dhcpv4.OptionMessage.Code(), []byte(why))
	rep.msg.siaddr = netip.Addr{}
	if !r.relayed {
		rep.dst, rep.ifIndex = broadcastClient, r.in.ifIndex
		rep.msg.flags |= 0x8000
	}
	return rep, outNak
}

func (s *Server) decline(r *request, serverIP netip.Addr) (*reply, string) {
	if sid := r.pkt.serverID(); sid.IsValid() && sid != serverIP {
		return nil, outOtherServer
	}
	ip := r.pkt.requested()
	if !ip.IsValid() {
		return nil, outSilent
	}
	if s.declineOfReserved(r, ip) {
		return nil, outDeclineIgnored
	}
	l, ok := s.leases.decline(ip, r.mac, r.now, r.now.Add(r.cfg.DeclineHold))
	if !ok {
		return nil, outSilent
	}
	s.log.Warn("address declined by client, quarantined", "mac", r.pkt.chaddr.String(), "ip", ip.String(), "until", l.Expires)
	if !s.committer.trySubmit(commitOp{lease: &l}) {
		s.metrics.droppedRecords.Inc()
	}
	return nil, outDeclined
}

func (s *Server) release(r *request, serverIP netip.Addr) (*reply, string) {
	if sid := r.pkt.serverID(); sid.IsValid() && sid != serverIP {
		return nil, outOtherServer
	}
	ip := r.pkt.clientIP()
	l, ok := s.leases.release(ip, r.mac, r.now)
	if !ok {
		return nil, outSilent
	}
	// Losing a release in a crash only keeps the address reserved longer:
	// no need to wait for the commit, nor to queue it when congested.
	if !s.committer.trySubmit(commitOp{lease: &l}) {
		s.metrics.droppedRecords.Inc()
	}
	return nil, outReleased
}

// handleProxy answers only booting clients we may boot, with the PXE
// options and no address (PXE spec "proxyDHCP").
func (s *Server) handleProxy(r *request) (*reply, string) {
	if !r.client.Class.Boots() {
		return nil, outUnsupported
	}
	if !r.mayBoot() {
		return nil, outNotAllowed
	}
	serverIP := r.cfg.serverIPFor(nil, r.ifc, r.relayed)
	onProxyPort := r.in.port == r.cfg.ProxyPort && r.cfg.ProxyPort > 0
	var typ dhcpv4.MessageType
	switch {
	case r.typ == dhcpv4.MessageTypeDiscover && !onProxyPort:
		typ = dhcpv4.MessageTypeOffer
	case r.typ == dhcpv4.MessageTypeRequest && onProxyPort:
		typ = dhcpv4.MessageTypeAck
	case r.typ == dhcpv4.MessageTypeRequest && r.pkt.serverID() == serverIP:
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, outUnsupported
	}
	rep := s.newReply(r, typ, serverIP)
	rep.msg.ciaddr = r.pkt.clientIP()
	s.addBootOptions(&rep.msg, r, serverIP)
	if onProxyPort {
		rep.dst, rep.ifIndex = r.in.src, 0
	}
	if typ == dhcpv4.MessageTypeOffer {
		rep.delay = r.cfg.ReplyDelay[r.client.Class]
		return rep, outOffer
	}
	return rep, outAck
}

// newReply starts a reply to r and picks its destination (RFC 2131 §4.1):
// the relay's port 67, the client's own address when it has one, else
// broadcast out of the interface the request came in on.
func (s *Server) newReply(r *request, typ dhcpv4.MessageType, serverIP netip.Addr) *reply {
	req := r.pkt
	rep := &reply{src: serverIP, reqType: r.typ, class: r.client.Class, received: r.in.received}
	m := &rep.msg
	m.init()
	m.typ, m.hwType, m.hops, m.xid, m.flags = typ, uint8(req.htype), req.hops, req.xid, req.flags
	m.chaddr, m.giaddr = req.chaddr, req.gateway()
	if serverIP.IsValid() {
		m.siaddr = serverIP
		rep.sid = serverIP.As4()
		m.set(dhcpv4.OptionServerIdentifier.Code(), rep.sid[:])
	}
	// RFC 6842: echo the client identifier; RFC 3046: echo relay info.
	for _, c := range [...]uint8{dhcpv4.OptionClientIdentifier.Code(), dhcpv4.OptionRelayAgentInformation.Code()} {
		if v := req.option(c); v != nil {
			m.set(c, v)
		}
	}
	ciaddr := req.clientIP()
	switch {
	case r.relayed:
		rep.dst = netip.AddrPortFrom(m.giaddr, dhcpv4.ServerPort)
	case ciaddr.IsValid() && typ != dhcpv4.MessageTypeNak:
		rep.dst = netip.AddrPortFrom(ciaddr, dhcpv4.ClientPort)
	default:
		rep.dst, rep.ifIndex = broadcastClient, r.in.ifIndex
	}
	return rep
}

// addNetworkOptions adds the full-mode address options: 1, 3, 6, 12, 15,
// and with a lease 51, 58, 59; 17 for a known node's OS.
func (s *Server) addNetworkOptions(m *replyMsg, r *request, sub *subnetSettings, serverIP netip.Addr, lease bool) {
	cfg := r.cfg
	m.set(dhcpv4.OptionSubnetMask.Code(), sub.maskBytes)
	if sub.routerBytes != nil {
		m.set(dhcpv4.OptionRouter.Code(), sub.routerBytes)
	}
	if sub.dnsBytes != nil {
		m.set(dhcpv4.OptionDomainNameServer.Code(), sub.dnsBytes)
	}
	if sub.domainBytes != nil {
		m.set(dhcpv4.OptionDomainName.Code(), sub.domainBytes)
	}
	if r.known && r.node.Name != "" {
		m.set(dhcpv4.OptionHostName.Code(), []byte(r.node.Name))
	}
	if lease {
		m.set(dhcpv4.OptionIPAddressLeaseTime.Code(), cfg.leaseBytes)
		m.set(dhcpv4.OptionRenewTimeValue.Code(), cfg.t1Bytes)
		m.set(dhcpv4.OptionRebindingTimeValue.Code(), cfg.t2Bytes)
	}
	if r.client.Class == ClassOS && r.known && r.node.Netboot && r.node.Name != "" {
		rp := r.node.RootPath
		if rp == "" {
			rp = serverIP.String() + ":/nodes/" + r.node.Name
		}
		m.set(dhcpv4.OptionRootPath.Code(), []byte(rp))
	}
}

// addBootOptions adds what the client's boot firmware needs.
func (s *Server) addBootOptions(m *replyMsg, r *request, serverIP netip.Addr) {
	proxy := r.cfg.Mode == ModeProxy
	switch c := r.client.Class; {
	case c.IsPi():
		m.set(optVendorClass, []byte("PXEClient"))
		m.set(43, r.cfg.piVendor)
		if g := r.pkt.option(optClientGUID); g != nil {
			m.set(optClientGUID, g)
		}
		if serverIP.IsValid() {
			m.set(dhcpv4.OptionTFTPServerName.Code(), []byte(serverIP.String()))
		}
	case c == ClassIPXE:
		m.file = r.cfg.IPXEBootFile
		if r.pkt.optionRequested(dhcpv4.OptionBootfileName.Code()) {
			m.set(dhcpv4.OptionBootfileName.Code(), []byte(r.cfg.IPXEBootFile))
		}
		m.set(optIPXEEncap, ipxeNoPXEDHCP)
		if proxy {
			m.set(optVendorClass, []byte("PXEClient"))
		}
	case c == ClassPXE:
		file := r.cfg.PXEBootFiles[r.client.Arch]
		if file == "" {
			return
		}
		m.file = file
		if serverIP.IsValid() {
			m.set(dhcpv4.OptionTFTPServerName.Code(), []byte(serverIP.String()))
		}
		if r.pkt.optionRequested(dhcpv4.OptionBootfileName.Code()) {
			m.set(dhcpv4.OptionBootfileName.Code(), []byte(file))
		}
		if proxy {
			// Discovery control 8: boot the file named in this packet.
			m.set(optVendorClass, []byte("PXEClient"))
			m.set(43, []byte{pxeDiscoveryControl, 1, 8, pxeEnd})
		}
	}
}

// leaseFor builds the lease record r would get for ip.
func (s *Server) leaseFor(r *request, ip netip.Addr) Lease {
	l := Lease{
		IP:       ip,
		MAC:      slices.Clone(r.pkt.chaddr), // not a slice of the packet: the lease outlives it
		State:    LeaseBound,
		Expires:  r.now.Add(r.cfg.LeaseTime),
		Granted:  r.now,
		Hostname: r.pkt.hostName(),
		Class:    r.client.Class,
	}
	if r.known {
		l.Node = r.node.Name
	}
	if r.ifc != nil {
		l.Interface = r.ifc.name
	}
	return l
}

func (s *Server) servesInterface(ifc *ifaceInfo) bool {
	if len(s.ifIndexes) == 0 {
		return ifc == nil || !ifc.loopback
	}
	return ifc != nil && s.ifIndexes[ifc.index]
}

func (s *Server) logDecision(r *request, rep *reply, outcome string) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	args := []any{"mac", r.pkt.chaddr.String(), "node", r.node.Name, "message", msgName(r.typ),
		"class", r.client.Class.String(), "outcome", outcome, "xid", r.pkt.xid.String()}
	if rep != nil {
		if ip := rep.msg.yiaddr; ip.IsValid() {
			args = append(args, "ip", ip.String())
		}
		if m := rep.msg.get(dhcpv4.OptionMessage.Code()); m != nil {
			args = append(args, "reason", string(m))
		}
		if rep.delay > 0 {
			args = append(args, "delay", rep.delay)
		}
	}
	if r.ifc != nil {
		args = append(args, "interface", r.ifc.name)
	}
	if r.relayed {
		args = append(args, "relay", r.pkt.gateway().String())
	}
	s.log.Debug("dhcp decision", args...)
}

// addrOf converts a library IP (nil, 0.0.0.0 or an address) to netip.
func addrOf(ip net.IP) netip.Addr {
	v4 := ip.To4()
	if v4 == nil || v4.IsUnspecified() {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(v4))
}
