package dhcpd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"go.etcd.io/bbolt"
)

func opt(p *dhcpv4.DHCPv4, code uint8) []byte { return p.Options.Get(dhcpv4.GenericOptionCode(code)) }

func u32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func TestFullModeDORAPlainClient(t *testing.T) {
	u := newUnitServer(t, testConfig(), newFakeNodes(), nil)
	offer, rep, outcome := u.exchange(discover("02:00:00:00:00:01"))
	if outcome != outOffer || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("outcome %s, reply %v", outcome, offer)
	}
	ip := addrOf(offer.YourIPAddr)
	if ip != netip.MustParseAddr("10.99.0.100") {
		t.Errorf("offered %s, want the first pool address", ip)
	}
	if rep.dst != broadcastClient || rep.ifIndex != testIfIndex {
		t.Errorf("offer goes to %s via %d, want broadcast via the ingress interface", rep.dst, rep.ifIndex)
	}
	for code, want := range map[uint8][]byte{
		1:  {255, 255, 255, 0},
		3:  {10, 99, 0, 254},
		6:  {10, 99, 0, 53},
		15: []byte("pi.test"),
		54: {10, 99, 0, 1},
	} {
		if got := opt(offer, code); !bytes.Equal(got, want) {
			t.Errorf("option %d = %v, want %v", code, got, want)
		}
	}
	if u32(opt(offer, 51)) != 3600 || u32(opt(offer, 58)) != 1800 || u32(opt(offer, 59)) != 3150 {
		t.Errorf("lease/T1/T2 = %d/%d/%d", u32(opt(offer, 51)), u32(opt(offer, 58)), u32(opt(offer, 59)))
	}
	for _, code := range []uint8{17, 43, 60, 97, 175} {
		if opt(offer, code) != nil {
			t.Errorf("plain client got option %d", code)
		}
	}
	if rep.commit != nil {
		t.Error("an OFFER to a client that will REQUEST needs no commit")
	}
	ack, rep, outcome := u.exchange(requestFor(offer))
	if outcome != outAck || ack.MessageType() != dhcpv4.MessageTypeAck || addrOf(ack.YourIPAddr) != ip {
		t.Fatalf("outcome %s, ack %v", outcome, ack)
	}
	if rep.commit == nil {
		t.Fatal("ACK sent without a durable commit")
	}
	l, ok, err := u.Store().LeaseByMAC(mustMAC("02:00:00:00:00:01"))
	if err != nil || !ok || l.IP != ip || !l.Active(u.clock.Now()) || l.Expires != u.clock.Now().Add(time.Hour) {
		t.Fatalf("stored lease %+v %v %v", l, ok, err)
	}
}

func TestPiReplies(t *testing.T) {
	nodes := newFakeNodes().
		add("dc:a6:32:2e:f8:ed", Node{Name: "pi4", IP: netip.MustParseAddr("10.99.0.14"), Netboot: true}).
		add("2c:cf:67:0a:0b:0c", Node{Name: "pi5", IP: netip.MustParseAddr("10.99.0.15"), Netboot: true}).
		add("b8:27:eb:a1:b2:c3", Node{Name: "pi3", IP: netip.MustParseAddr("10.99.0.13"), Netboot: true}).
		add("b8:27:eb:12:34:56", Node{Name: "pi3p", Netboot: true})
	tests := []struct {
		fixture string
		node    string
		ip      string
		delay   time.Duration
		commit  bool // Pi 3 ROMs never REQUEST: the OFFER is the lease
	}{
		{"pi4-discover.hex", "pi4", "10.99.0.14", 0, false},
		{"udhcpc-fakepi4-discover.hex", "pi4", "10.99.0.14", 0, false},
		{"pi5-discover.hex", "pi5", "10.99.0.15", 0, false},
		{"pi3b-discover.hex", "pi3", "10.99.0.13", 2 * time.Second, true},
		{"pi3bplus-discover.hex", "pi3p", "10.99.0.100", 2 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			u := newUnitServer(t, testConfig(), nodes, nil)
			req := packetFromFixture(t, tt.fixture)
			offer, rep, outcome := u.exchange(req)
			if outcome != outOffer {
				t.Fatalf("outcome %s", outcome)
			}
			if got := addrOf(offer.YourIPAddr).String(); got != tt.ip {
				t.Errorf("yiaddr %s, want %s", got, tt.ip)
			}
			if got := addrOf(offer.ServerIPAddr).String(); got != "10.99.0.1" {
				t.Errorf("siaddr %s", got)
			}
			if got := string(opt(offer, 60)); got != "PXEClient" {
				t.Errorf("option 60 %q", got)
			}
			if got := opt(offer, 43); !bytes.Equal(got, PiVendorOptions(true)) {
				t.Errorf("option 43 %x, want the padded form", got)
			}
			if got, want := opt(offer, 97), opt(req, 97); !bytes.Equal(got, want) {
				t.Errorf("option 97 %x, want it echoed %x", got, want)
			}
			if got := string(opt(offer, 66)); got != "10.99.0.1" {
				t.Errorf("option 66 %q", got)
			}
			if got := string(opt(offer, 12)); got != tt.node {
				t.Errorf("option 12 %q", got)
			}
			if opt(offer, 17) != nil || opt(offer, 175) != nil {
				t.Error("a Pi got option 17 or 175")
			}
			if rep.delay != tt.delay {
				t.Errorf("delay %s, want %s", rep.delay, tt.delay)
			}
			if (rep.commit != nil) != tt.commit {
				t.Errorf("commit %v, want %v", rep.commit != nil, tt.commit)
			}
			if tt.commit {
				if _, ok, _ := u.Store().LeaseByMAC(req.ClientHWAddr); !ok {
					t.Error("Pi 3 offer not stored as a lease")
				}
			}
		})
	}
}

// A Pi 4 REQUEST may come without option 60: the ACK still carries the
// boot options of the offer.
func TestPi4RequestWithoutOption60(t *testing.T) {
	nodes := newFakeNodes().add("dc:a6:32:2e:f8:ed", Node{Name: "pi4", Netboot: true})
	u := newUnitServer(t, testConfig(), nodes, nil)
	offer, _, _ := u.exchange(packetFromFixture(t, "pi4-discover.hex"))
	req := requestFor(offer)
	req.Options.Del(dhcpv4.GenericOptionCode(60))
	ack, _, outcome := u.exchange(req)
	if outcome != outAck || !bytes.Equal(opt(ack, 43), PiVendorOptions(true)) {
		t.Fatalf("outcome %s, option 43 %x", outcome, opt(ack, 43))
	}
}

func TestIPXEAndOSReplies(t *testing.T) {
	nodes := newFakeNodes().add("52:54:00:12:34:56", Node{Name: "vm1", IP: netip.MustParseAddr("10.99.0.21"), Netboot: true})
	u := newUnitServer(t, testConfig(), nodes, nil)
	offer, _, outcome := u.exchange(packetFromFixture(t, "ipxe-discover.hex"))
	if outcome != outOffer {
		t.Fatalf("iPXE: %s", outcome)
	}
	if offer.BootFileName != "boot.ipxe" || string(opt(offer, 67)) != "boot.ipxe" {
		t.Errorf("iPXE boot file %q / option 67 %q", offer.BootFileName, opt(offer, 67))
	}
	if !bytes.Equal(opt(offer, 175), []byte{0xb0, 1, 1}) {
		t.Errorf("option 175 = %x", opt(offer, 175))
	}
	if opt(offer, 17) != nil || opt(offer, 43) != nil {
		t.Error("iPXE got option 17 or 43")
	}
	if addrOf(offer.YourIPAddr) != netip.MustParseAddr("10.99.0.21") || addrOf(offer.ServerIPAddr) != netip.MustParseAddr("10.99.0.1") {
		t.Errorf("yiaddr %s siaddr %s", offer.YourIPAddr, offer.ServerIPAddr)
	}

	// The same machine's initramfs: an OS client, gets the root path.
	os := packetFromFixture(t, "udhcpc-initramfs-discover.hex")
	os.ClientHWAddr = mustMAC("52:54:00:12:34:56")
	offer, _, _ = u.exchange(os)
	if got := string(opt(offer, 17)); got != "10.99.0.1:/nodes/vm1" {
		t.Errorf("option 17 %q", got)
	}
	if offer.BootFileName != "" || opt(offer, 175) != nil || opt(offer, 60) != nil {
		t.Error("the OS client got boot options")
	}
	ack, _, _ := u.exchange(requestFor(offer))
	if got := string(opt(ack, 17)); got != "10.99.0.1:/nodes/vm1" {
		t.Errorf("ACK option 17 %q", got)
	}
}

func TestPXEBootFileByArch(t *testing.T) {
	nodes := newFakeNodes().add("00:1b:21:aa:bb:cc", Node{Name: "pc", Netboot: true})
	u := newUnitServer(t, testConfig(), nodes, nil)
	offer, _, _ := u.exchange(packetFromFixture(t, "pxe-uefi-discover.hex"))
	if offer.BootFileName != "ipxe.efi" {
		t.Errorf("UEFI x64 boot file %q", offer.BootFileName)
	}
}

func TestDiscoveryPolicy(t *testing.T) {
	for _, tt := range []struct {
		policy   DiscoveryPolicy
		outcome  string
		recorded bool
	}{
		{DiscoveryRecord, outNotAllowed, true},
		{DiscoveryBoot, outOffer, true},
		{DiscoveryIgnore, outPolicyIgnore, false},
	} {
		t.Run(string(tt.policy), func(t *testing.T) {
			cfg := testConfig()
			cfg.Discovery = tt.policy
			u := newUnitServer(t, cfg, newFakeNodes(), nil)
			_, _, outcome := u.exchange(packetFromFixture(t, "pi4-discover.hex"))
			if outcome != tt.outcome {
				t.Errorf("outcome %s, want %s", outcome, tt.outcome)
			}
			u.flush()
			d, ok, err := u.Store().DiscoveredByMAC(mustMAC("dc:a6:32:2e:f8:ed"))
			if err != nil || ok != tt.recorded {
				t.Fatalf("recorded %v (%v), want %v", ok, err, tt.recorded)
			}
			if ok && (d.Class != ClassPi4 || d.Serial != "5b154510" || d.Interface != "br0" || d.FirstSeen.IsZero()) {
				t.Errorf("record %+v", d)
			}
			if ok {
				if found, err := u.Forget(d.MAC); !found || err != nil {
					t.Errorf("Forget = %v, %v", found, err)
				}
				if all, _ := u.Store().Discovered(); len(all) != 0 {
					t.Errorf("still discovered after Forget: %v", all)
				}
			}
		})
	}
}

func TestNetbootDisabledNode(t *testing.T) {
	nodes := newFakeNodes().add("dc:a6:32:2e:f8:ed", Node{Name: "pi4", IP: netip.MustParseAddr("10.99.0.14"), Netboot: false})
	u := newUnitServer(t, testConfig(), nodes, nil)
	if _, _, outcome := u.exchange(packetFromFixture(t, "pi4-discover.hex")); outcome != outNotAllowed {
		t.Errorf("boot firmware of a netboot=false node: %s", outcome)
	}
	os := packetFromFixture(t, "udhcpc-plain-discover.hex")
	os.ClientHWAddr = mustMAC("dc:a6:32:2e:f8:ed")
	offer, _, outcome := u.exchange(os)
	if outcome != outOffer || addrOf(offer.YourIPAddr) != netip.MustParseAddr("10.99.0.14") || opt(offer, 17) != nil {
		t.Errorf("its OS: %s, %v, option 17 %q", outcome, offer, opt(offer, 17))
	}
	if all, _ := u.Store().Discovered(); len(all) != 0 {
		t.Errorf("a known node was recorded as discovered: %v", all)
	}
}

func TestIgnoreOthers(t *testing.T) {
	cfg := testConfig()
	cfg.IgnoreOthers = true
	nodes := newFakeNodes().add("02:00:00:00:00:02", Node{Name: "n2"})
	u := newUnitServer(t, cfg, nodes, nil)
	if _, _, outcome := u.exchange(discover("02:00:00:00:00:01")); outcome != outIgnoredOther {
		t.Errorf("stranger: %s", outcome)
	}
	if _, _, outcome := u.exchange(discover("02:00:00:00:00:02")); outcome != outOffer {
		t.Errorf("node: %s", outcome)
	}
}

func TestRequestStates(t *testing.T) {
	u := newUnitServer(t, testConfig(), newFakeNodes(), nil)
	a, b := "02:00:00:00:00:0a", "02:00:00:00:00:0b"
	offer, _, _ := u.exchange(discover(a))
	ack, _, _ := u.exchange(requestFor(offer))
	ipA := addrOf(ack.YourIPAddr)

	// SELECTING for another server: silence, the offer is dropped.
	offerB, _, _ := u.exchange(discover(b))
	other := requestFor(offerB, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 2))))
	if rep, _, outcome := u.exchange(other); rep != nil || outcome != outOtherServer {
		t.Errorf("REQUEST for another server: %v %s", rep, outcome)
	}
	if _, ok := u.leases.offered(keyOf(mustMAC(b)), u.clock.Now()); ok {
		t.Error("offer kept after the client chose another server")
	}

	// INIT-REBOOT asking for A's address: NAK, broadcast.
	initReboot := discover(b, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipA.AsSlice())))
	nak, rep, outcome := u.exchange(initReboot)
	if outcome != outNak || nak.MessageType() != dhcpv4.MessageTypeNak || rep.dst != broadcastClient {
		t.Errorf("INIT-REBOOT for a taken address: %s %v", outcome, rep)
	}
	// INIT-REBOOT on the wrong network: NAK.
	wrong := discover(b, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 5))))
	if _, _, outcome := u.exchange(wrong); outcome != outNak {
		t.Errorf("INIT-REBOOT on a wrong network: %s", outcome)
	}
	// INIT-REBOOT for a free pool address (a client remembering a lease
	// we lost): granted.
	free := discover(b, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 150))))
	if ack, _, outcome := u.exchange(free); outcome != outAck || addrOf(ack.YourIPAddr) != netip.MustParseAddr("10.99.0.150") {
		t.Errorf("INIT-REBOOT for a free address: %s", outcome)
	}

	// RENEWING: unicast to ciaddr, extends the lease.
	u.clock.Add(30 * time.Minute)
	renew, err := dhcpv4.NewRenewFromAck(ack)
	if err != nil {
		t.Fatal(err)
	}
	ack2, rep, outcome := u.exchange(renew)
	if outcome != outAck || addrOf(ack2.YourIPAddr) != ipA || rep.dst != netip.AddrPortFrom(ipA, 68) || rep.ifIndex != 0 {
		t.Errorf("RENEW: %s dst %s", outcome, rep.dst)
	}
	l, _, _ := u.Store().LeaseByMAC(mustMAC(a))
	if want := u.clock.Now().Add(time.Hour); !l.Expires.Equal(want) {
		t.Errorf("renewed lease expires %s, want %s", l.Expires, want)
	}
}

func TestReleaseAndDecline(t *testing.T) {
	cfg := testConfig()
	cfg.Subnets[0].Range = Range{netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.101")}
	u := newUnitServer(t, cfg, newFakeNodes(), nil)
	lease := func(mac string) netip.Addr {
		offer, _, outcome := u.exchange(discover(mac))
		if outcome != outOffer {
			return netip.Addr{}
		}
		ack, _, _ := u.exchange(requestFor(offer))
		return addrOf(ack.YourIPAddr)
	}
	ipA := lease("02:00:00:00:00:0a")
	ipB := lease("02:00:00:00:00:0b")
	if ip := lease("02:00:00:00:00:0c"); ip.IsValid() {
		t.Fatalf("pool of 2 gave a third address %s", ip)
	}
	rel, err := dhcpv4.New(dhcpv4.WithHwAddr(mustMAC("02:00:00:00:00:0a")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(ipA.AsSlice()), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1))))
	if err != nil {
		t.Fatal(err)
	}
	if rep, _, outcome := u.exchange(rel); rep != nil || outcome != outReleased {
		t.Fatalf("RELEASE: %v %s", rep, outcome)
	}
	if ip := lease("02:00:00:00:00:0c"); ip != ipA {
		t.Fatalf("after RELEASE the third client got %s, want %s", ip, ipA)
	}
	dec, err := dhcpv4.New(dhcpv4.WithHwAddr(mustMAC("02:00:00:00:00:0b")), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipB.AsSlice())), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1))))
	if err != nil {
		t.Fatal(err)
	}
	// A stranger cannot decline B's address.
	stranger := *dec
	stranger.ClientHWAddr = mustMAC("02:00:00:00:00:0d")
	if _, _, outcome := u.exchange(&stranger); outcome != outSilent {
		t.Errorf("stranger's DECLINE: %s", outcome)
	}
	if _, _, outcome := u.exchange(dec); outcome != outDeclined {
		t.Fatalf("DECLINE: %s", outcome)
	}
	u.flush()
	if ip := lease("02:00:00:00:00:0d"); ip.IsValid() {
		t.Errorf("declined address handed out again at once: %s", ip)
	}
	u.clock.Add(time.Hour + time.Second)
	if ip := lease("02:00:00:00:00:0d"); ip != ipB {
		t.Errorf("after the quarantine got %s, want %s", ip, ipB)
	}
}

func TestPoolExhaustionAndExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.Subnets[0].Range = Range{netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.103")}
	u := newUnitServer(t, cfg, newFakeNodes(), nil)
	seen := map[netip.Addr]bool{}
	for i := range 4 {
		offer, _, _ := u.exchange(discover(fmt.Sprintf("02:00:00:00:01:%02x", i)))
		ack, _, outcome := u.exchange(requestFor(offer))
		ip := addrOf(ack.YourIPAddr)
		if outcome != outAck || seen[ip] {
			t.Fatalf("client %d: %s %s", i, outcome, ip)
		}
		seen[ip] = true
	}
	if _, _, outcome := u.exchange(discover("02:00:00:00:01:ff")); outcome != outNoAddress {
		t.Fatalf("full pool: %s", outcome)
	}
	u.clock.Add(time.Hour + time.Second)
	offer, _, outcome := u.exchange(discover("02:00:00:00:01:ff"))
	if outcome != outOffer || !seen[addrOf(offer.YourIPAddr)] {
		t.Fatalf("after expiry: %s %v", outcome, offer)
	}
}

// Offers hold their address: two clients discovering at once get two.
func TestOffersHoldAddresses(t *testing.T) {
	u := newUnitServer(t, testConfig(), newFakeNodes(), nil)
	o1, _, _ := u.exchange(discover("02:00:00:00:00:01"))
	o2, _, _ := u.exchange(discover("02:00:00:00:00:02"))
	if addrOf(o1.YourIPAddr) == addrOf(o2.YourIPAddr) {
		t.Fatalf("both offered %s", o1.YourIPAddr)
	}
	// The same client discovering again gets the same offer.
	o1b, _, _ := u.exchange(discover("02:00:00:00:00:01"))
	if !o1b.YourIPAddr.Equal(o1.YourIPAddr) {
		t.Errorf("repeated DISCOVER: %s then %s", o1.YourIPAddr, o1b.YourIPAddr)
	}
	// Requesting another client's offered address is refused.
	steal := requestFor(o2)
	steal.ClientHWAddr = mustMAC("02:00:00:00:00:01")
	if _, _, outcome := u.exchange(steal); outcome != outNak {
		t.Errorf("REQUEST for another client's offer: %s", outcome)
	}
}

func TestReservationNotGivenToOthers(t *testing.T) {
	cfg := testConfig()
	cfg.Subnets[0].Range = Range{netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.101")}
	nodes := newFakeNodes().add("02:00:00:00:00:99", Node{Name: "n", IP: netip.MustParseAddr("10.99.0.100")})
	u := newUnitServer(t, cfg, nodes, nil)
	offer, _, _ := u.exchange(discover("02:00:00:00:00:01"))
	if addrOf(offer.YourIPAddr) != netip.MustParseAddr("10.99.0.101") {
		t.Errorf("stranger offered %s (10.99.0.100 is reserved)", offer.YourIPAddr)
	}
	// A node asking for a pool address while its reservation is free is
	// sent to its reservation.
	ask := discover("02:00:00:00:00:99", dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 101))))
	if _, _, outcome := u.exchange(ask); outcome != outNak {
		t.Errorf("node requesting a pool address: %s", outcome)
	}
}

func TestRelayedRequest(t *testing.T) {
	cfg := testConfig()
	cfg.ServerIP = netip.MustParseAddr("10.99.0.1")
	cfg.Subnets = append(cfg.Subnets, Subnet{
		Network: netip.MustParsePrefix("10.30.0.0/24"),
		Range:   Range{netip.MustParseAddr("10.30.0.100"), netip.MustParseAddr("10.30.0.110")},
		Router:  netip.MustParseAddr("10.30.0.1"),
	})
	u := newUnitServer(t, cfg, newFakeNodes(), nil)
	d := discover("02:00:00:00:00:01", dhcpv4.WithGatewayIP(net.IPv4(10, 30, 0, 1)))
	offer, rep, outcome := u.exchange(d)
	if outcome != outOffer || addrOf(offer.YourIPAddr) != netip.MustParseAddr("10.30.0.100") {
		t.Fatalf("relayed DISCOVER: %s %v", outcome, offer)
	}
	if rep.dst != netip.MustParseAddrPort("10.30.0.1:67") || rep.ifIndex != 0 {
		t.Errorf("relayed OFFER goes to %s via %d, want the relay's port 67", rep.dst, rep.ifIndex)
	}
	if !offer.GatewayIPAddr.Equal(net.IPv4(10, 30, 0, 1)) || addrOf(offer.ServerIPAddr) != cfg.ServerIP {
		t.Errorf("giaddr %s siaddr %s", offer.GatewayIPAddr, offer.ServerIPAddr)
	}
	unknown := discover("02:00:00:00:00:02", dhcpv4.WithGatewayIP(net.IPv4(10, 40, 0, 1)))
	if _, _, outcome := u.exchange(unknown); outcome != outNoSubnet {
		t.Errorf("relay from an unknown subnet: %s", outcome)
	}
}

func TestProxyMode(t *testing.T) {
	cfg := Config{Mode: ModeProxy, ServerIP: netip.MustParseAddr("10.99.0.1")}
	nodes := newFakeNodes().
		add("dc:a6:32:2e:f8:ed", Node{Name: "pi4", Netboot: true}).
		add("52:54:00:12:34:56", Node{Name: "vm1", Netboot: true}).
		add("02:00:00:00:00:01", Node{Name: "os-only", Netboot: true})
	u := newUnitServer(t, cfg, nodes, nil)
	offer, rep, outcome := u.exchange(packetFromFixture(t, "pi4-discover.hex"))
	if outcome != outOffer {
		t.Fatalf("proxy Pi 4: %s", outcome)
	}
	if addrOf(offer.YourIPAddr).IsValid() {
		t.Errorf("proxy offer has yiaddr %s", offer.YourIPAddr)
	}
	if string(opt(offer, 60)) != "PXEClient" || !bytes.Equal(opt(offer, 43), PiVendorOptions(true)) ||
		opt(offer, 97) == nil || !bytes.Equal(opt(offer, 54), []byte{10, 99, 0, 1}) || addrOf(offer.ServerIPAddr) != cfg.ServerIP {
		t.Errorf("proxy offer options: %v", offer.Options)
	}
	for _, code := range []uint8{1, 3, 51, 58, 59} {
		if opt(offer, code) != nil {
			t.Errorf("proxy offer carries option %d", code)
		}
	}
	if rep.dst != broadcastClient {
		t.Errorf("proxy offer to %s", rep.dst)
	}
	// iPXE: boot file, no-pxedhcp and the PXEClient marker.
	offer, _, _ = u.exchange(packetFromFixture(t, "ipxe-discover.hex"))
	if offer.BootFileName != "boot.ipxe" || string(opt(offer, 60)) != "PXEClient" || opt(offer, 175) == nil || offer.YourIPAddr.To4() != nil && !offer.YourIPAddr.IsUnspecified() {
		t.Errorf("proxy iPXE offer %v", offer)
	}
	// Never anything else: an OS client, even a node's, gets silence.
	for _, p := range []*dhcpv4.DHCPv4{discover("02:00:00:00:00:01"), discover("02:00:00:00:00:02")} {
		if rep, _, outcome := u.exchange(p); rep != nil || outcome != outUnsupported {
			t.Errorf("proxy answered an OS client: %s", outcome)
		}
	}
	// A REQUEST to the real server (its server id) gets nothing from us.
	req := packetFromFixture(t, "pi4-discover.hex")
	req.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 254)))
	if rep, _, _ := u.exchange(req); rep != nil {
		t.Error("proxy answered a REQUEST meant for the address server")
	}
	// A REQUEST to the PXE port is answered to its source.
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1)))
	req.ClientIPAddr = net.IPv4(10, 99, 0, 77)
	in := &packetIn{data: req.ToBytes(), ifIndex: testIfIndex, port: 4011, received: time.Now(), src: netip.MustParseAddrPort("10.99.0.77:4011")}
	rep, _, outcome = u.handle(in)
	if outcome != outAck || rep.dst != in.src || rep.msg.typ != dhcpv4.MessageTypeAck {
		t.Errorf("PXE port REQUEST: %s %v", outcome, rep)
	}
}

func TestRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 1, 3
	u := newUnitServer(t, cfg, newFakeNodes(), nil)
	limited := 0
	for range 10 {
		if _, _, outcome := u.exchange(discover("02:00:00:00:00:01")); outcome == outRateLimited {
			limited++
		}
	}
	if limited != 7 {
		t.Errorf("%d of 10 limited, want 7 (burst 3)", limited)
	}
	if _, _, outcome := u.exchange(discover("02:00:00:00:00:02")); outcome != outOffer {
		t.Errorf("another client was starved: %s", outcome)
	}
}

func TestMalformedPacketsCounted(t *testing.T) {
	u := newUnitServer(t, testConfig(), newFakeNodes(), nil)
	good := discover("02:00:00:00:00:01").ToBytes()
	for _, b := range [][]byte{nil, {1}, good[:100], good[:239], append(append([]byte{}, good[:240]...), 53, 5)} {
		rep, r, _ := u.handle(&packetIn{data: b, ifIndex: testIfIndex, port: 67})
		if rep != nil || r != nil {
			t.Errorf("%d bytes: handled", len(b))
		}
	}
	reply := discover("02:00:00:00:00:01")
	reply.OpCode = dhcpv4.OpcodeBootReply
	if rep, r, _ := u.handle(&packetIn{data: reply.ToBytes(), ifIndex: testIfIndex, port: 67}); rep != nil || r != nil {
		t.Error("a BOOTREPLY was handled as a request")
	}
}

func TestLeasesSurviveRestart(t *testing.T) {
	db := openTestDB(t, "")
	u := newUnitServer(t, testConfig(), newFakeNodes(), db)
	got := map[string]netip.Addr{}
	for i := range 20 {
		mac := fmt.Sprintf("02:00:00:00:02:%02x", i)
		offer, _, _ := u.exchange(discover(mac))
		ack, _, _ := u.exchange(requestFor(offer))
		got[mac] = addrOf(ack.YourIPAddr)
	}
	u.stop()
	u2 := newUnitServer(t, testConfig(), newFakeNodes(), db)
	used := map[netip.Addr]bool{}
	for mac, ip := range got {
		offer, _, _ := u2.exchange(discover(mac))
		if addrOf(offer.YourIPAddr) != ip {
			t.Errorf("%s: offered %s after restart, had %s", mac, offer.YourIPAddr, ip)
		}
		used[ip] = true
	}
	for i := range 20 {
		offer, _, _ := u2.exchange(discover(fmt.Sprintf("02:00:00:00:03:%02x", i)))
		if used[addrOf(offer.YourIPAddr)] {
			t.Errorf("new client offered %s, which is leased", offer.YourIPAddr)
		}
	}
}

func TestReconfigure(t *testing.T) {
	u := newUnitServer(t, testConfig(), newFakeNodes(), nil)
	cfg := testConfig()
	cfg.Now = u.clock.Now
	cfg.Subnets[0].Range = Range{netip.MustParseAddr("10.99.0.50"), netip.MustParseAddr("10.99.0.60")}
	cfg.LeaseTime = 2 * time.Hour
	if err := u.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	offer, _, _ := u.exchange(discover("02:00:00:00:00:01"))
	if addrOf(offer.YourIPAddr) != netip.MustParseAddr("10.99.0.50") || u32(opt(offer, 51)) != 7200 {
		t.Errorf("after Reconfigure: %s, lease %d", offer.YourIPAddr, u32(opt(offer, 51)))
	}
	cfg.Interfaces = []string{"eth9"}
	if err := u.Reconfigure(cfg); err != ErrRestartRequired {
		t.Errorf("interface change: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	bad := []Config{
		{Mode: "both"},
		{Mode: ModeFull},
		{Mode: ModeFull, Subnets: []Subnet{{Network: netip.MustParsePrefix("10.0.0.0/24"), Range: Range{netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.5")}}}},
		{Mode: ModeFull, Subnets: []Subnet{{Network: netip.MustParsePrefix("10.0.0.0/24")}, {Network: netip.MustParsePrefix("10.0.0.0/16")}}},
		{Mode: ModeProxy, Discovery: "maybe"},
		{Mode: ModeProxy, ServerIP: netip.MustParseAddr("fd00::1")},
	}
	for _, c := range bad {
		if _, err := compile(c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}

func TestLeaseReuse(t *testing.T) {
	dora := func(u *unitServer, mac string) (*dhcpv4.DHCPv4, *reply) {
		offer, _, _ := u.exchange(discover(mac))
		ack, rep, outcome := u.exchange(requestFor(offer))
		if outcome != outAck {
			t.Fatalf("%s: %s", mac, outcome)
		}
		return ack, rep
	}
	u := newUnitServer(t, testConfig(), newFakeNodes(), nil)
	ack1, rep := dora(u, "02:00:00:00:00:01")
	if rep.commit == nil {
		t.Fatal("first grant not written")
	}
	u.clock.Add(10 * time.Minute)
	ack2, rep := dora(u, "02:00:00:00:00:01")
	if rep.commit != nil {
		t.Error("a grant 10 min after the last one was written again (reuse window is 15 min)")
	}
	if !ack2.YourIPAddr.Equal(ack1.YourIPAddr) || u32(opt(ack2, 51)) != 3000 || u32(opt(ack2, 58)) != 1500 {
		t.Errorf("reused lease: %s for %d s (T1 %d), want %s for 3000 s", ack2.YourIPAddr, u32(opt(ack2, 51)), u32(opt(ack2, 58)), ack1.YourIPAddr)
	}
	u.clock.Add(6 * time.Minute)
	if _, rep := dora(u, "02:00:00:00:00:01"); rep.commit == nil {
		t.Error("a grant 16 min after the last one was not written")
	}

	cfg := testConfig()
	cfg.LeaseReuse = -1
	u = newUnitServer(t, cfg, newFakeNodes(), nil)
	dora(u, "02:00:00:00:00:01")
	if _, rep := dora(u, "02:00:00:00:00:01"); rep.commit == nil {
		t.Error("reuse turned off, but the second grant was not written")
	}

	// The Pi 3 ROM repeats its DISCOVER; the lease it took is reused.
	nodes := newFakeNodes().add("b8:27:eb:a1:b2:c3", Node{Name: "pi3", Netboot: true})
	u = newUnitServer(t, testConfig(), nodes, nil)
	_, rep1, _ := u.exchange(packetFromFixture(t, "pi3b-discover.hex"))
	u.clock.Add(5 * time.Second)
	offer2, rep2, _ := u.exchange(packetFromFixture(t, "pi3b-discover.hex"))
	if rep1.commit == nil || rep2.commit != nil || u32(opt(offer2, 51)) != 3595 {
		t.Errorf("Pi 3 repeat: first commit %v, second commit %v, lease %d", rep1.commit != nil, rep2.commit != nil, u32(opt(offer2, 51)))
	}
}

func TestExpiryHeapOrder(t *testing.T) {
	var h expiryHeap
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	offsets := []int{5, 1, 9, 3, 3, 7, 0, 8, 2, 6, 4, 1}
	for i, o := range offsets {
		h.push(base.Add(time.Duration(o)*time.Second), u32ToAddr(uint32(i)))
	}
	if h.due(base.Add(-time.Nanosecond).UnixNano()) {
		t.Fatal("due before the earliest deadline")
	}
	prev := int64(-1 << 63)
	for range offsets {
		if !h.due(base.Add(time.Hour).UnixNano()) {
			t.Fatal("not due")
		}
		e := h.pop()
		if e.when < prev {
			t.Fatalf("popped %d after %d", e.when, prev)
		}
		prev = e.when
	}
	if len(h) != 0 || h.due(base.Add(time.Hour).UnixNano()) {
		t.Fatalf("%d left", len(h))
	}
}

// A lease is durable once in the journal: readers see it before it moves
// to bbolt, a restart applies it (stopping at a torn record) and empties
// the journal.
func TestLeaseJournal(t *testing.T) {
	db := openTestDB(t, "")
	s, err := New(testConfig(), newFakeNodes(), db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.committer.applyEvery, s.committer.applyMax = time.Hour, 1<<30 // never, while the test looks
	var wg sync.WaitGroup
	wg.Go(func() { s.committer.run(nil) })
	now := time.Now().UTC().Truncate(time.Second)
	mk := func(i int) Lease {
		return Lease{IP: netip.AddrFrom4([4]byte{10, 99, 0, byte(100 + i)}), MAC: net.HardwareAddr{2, 0, 0, 0, 9, byte(i)},
			State: LeaseBound, Expires: now.Add(time.Hour), Granted: now, Hostname: fmt.Sprint("h", i)}
	}
	for i := range 3 {
		l := mk(i)
		done := make(chan error, 1)
		s.committer.submit(commitOp{lease: &l, done: func(err error, _ bool) { done <- err }})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	inBolt := 0
	db.View(func(tx *bbolt.Tx) error { inBolt = tx.Bucket(bucketLeases).Stats().KeyN; return nil })
	if inBolt != 0 {
		t.Fatalf("%d records in bbolt before the apply", inBolt)
	}
	got, err := s.Store().Leases()
	if err != nil || len(got) != 3 || got[1].Hostname != "h1" || !got[2].Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("Leases() = %+v, %v; want the 3 journaled leases", got, err)
	}

	// A crash now (the committer never applies): a torn record at the end,
	// as a write cut short would leave.
	path := journalPath(db)
	l := mk(3)
	rec := appendRecord(nil, &l)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(rec[:len(rec)-3])
	f.Close()
	// The first server is abandoned, as a killed process would be (its
	// committer is stopped at the end of the test).

	s2, err := New(testConfig(), newFakeNodes(), db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("journal after New: %v, %v; want empty", fi, err)
	}
	db.View(func(tx *bbolt.Tx) error { inBolt = tx.Bucket(bucketLeases).Stats().KeyN; return nil })
	leases := s2.Leases()
	if inBolt != 3 || len(leases) != 3 {
		t.Fatalf("after restart: %d in bbolt, %d loaded; want 3 and 3 (the torn one dropped)", inBolt, len(leases))
	}
	close(s.committer.ch)
	wg.Wait()
}
