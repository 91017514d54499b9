package dhcpd

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fuzzSeeds are the fixture packets plus the other message types.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	entries, err := os.ReadDir(filepath.Join("testdata", "packets"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".hex") {
			seeds = append(seeds, readPacket(f, e.Name()))
		}
	}
	offer := discover("dc:a6:32:2e:f8:ed")
	offer.OpCode = dhcpv4.OpcodeBootReply
	offer.YourIPAddr = net.IPv4(10, 99, 0, 14)
	offer.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1)))
	for _, p := range []*dhcpv4.DHCPv4{
		requestFor(offer),
		discover("02:00:00:00:00:01", dhcpv4.WithGatewayIP(net.IPv4(10, 30, 0, 1))),
		discover("02:00:00:00:00:01", dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 100))),
		discover("02:00:00:00:00:01", dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 100)))),
		discover("02:00:00:00:00:01", dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 100))),
	} {
		seeds = append(seeds, p.ToBytes())
	}
	return seeds
}

// FuzzHandle feeds arbitrary datagrams to a full-mode and a proxy-mode
// server: nothing may panic, and every reply must encode and parse.
func FuzzHandle(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0))
	}
	nodes := newFakeNodes().
		add("dc:a6:32:2e:f8:ed", Node{Name: "pi4", IP: netip.MustParseAddr("10.99.0.14"), Netboot: true}).
		add("52:54:00:12:34:56", Node{Name: "vm1", Netboot: true}).
		add("b8:27:eb:a1:b2:c3", Node{Name: "pi3", Netboot: true})
	cfg := testConfig()
	cfg.Discovery = DiscoveryBoot
	cfg.RateLimit = -1
	cfg.Subnets = append(cfg.Subnets, Subnet{Network: netip.MustParsePrefix("10.30.0.0/24"),
		Range: Range{netip.MustParseAddr("10.30.0.10"), netip.MustParseAddr("10.30.0.12")}})
	full := newUnitServer(f, cfg, nodes, nil)
	proxy := newUnitServer(f, Config{Mode: ModeProxy, ServerIP: netip.MustParseAddr("10.99.0.1"), RateLimit: -1}, nodes, nil)
	f.Fuzz(func(t *testing.T, data []byte, port uint8) {
		for _, s := range []*unitServer{full, proxy} {
			in := &packetIn{data: data, ifIndex: testIfIndex, port: 67, received: time.Now(),
				src: netip.MustParseAddrPort("10.99.0.9:68")}
			if port&1 == 1 {
				in.port = 4011
			}
			rep, _, _ := s.handle(in)
			if rep == nil {
				continue
			}
			got, err := dhcpv4.FromBytes(rep.msg.encode())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			want, _ := dhcpv4.FromBytes(rep.msg.library().ToBytes())
			if got.String() != want.String() {
				t.Fatalf("encode and the library disagree:\n%s\n%s", got, want)
			}
			if !rep.dst.IsValid() {
				t.Fatalf("reply without destination")
			}
		}
	})
}

func FuzzDecodePXEVendorOptions(f *testing.F) {
	f.Add(PiVendorOptions(true))
	f.Add(PiVendorOptions(false))
	f.Add([]byte{6, 1, 8, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodePXEVendorOptions(b)
	})
}

func FuzzClassify(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		c := Classify(p)
		if c.Class >= numClasses || (c.Serial != "" && len(c.Serial) != 8) {
			t.Fatalf("Classify = %+v", c)
		}
	})
}

// parseRequest must agree with the library's FromBytes on every input,
// and so must the getters the server uses.
func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got packet
		gotErr := parseRequest(&got, b)
		want, wantErr := dhcpv4.FromBytes(b)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("parseRequest error %v, FromBytes error %v", gotErr, wantErr)
		}
		if gotErr != nil {
			return
		}
		ip := func(a [4]byte) net.IP { return net.IP(a[:]) }
		if got.op != want.OpCode || got.htype != want.HWType || got.hops != want.HopCount ||
			got.xid != want.TransactionID || got.secs != want.NumSeconds || got.flags != want.Flags ||
			!ip(got.ciaddr).Equal(want.ClientIPAddr) || !ip(got.yiaddr).Equal(want.YourIPAddr) ||
			!ip(got.siaddr).Equal(want.ServerIPAddr) || !ip(got.giaddr).Equal(want.GatewayIPAddr) ||
			!bytes.Equal(got.chaddr, want.ClientHWAddr) || len(got.opts) != len(want.Options) {
			t.Fatalf("parseRequest: %+v\nFromBytes:\n%s", got, want)
		}
		for c, v := range want.Options {
			if g := got.option(c); !bytes.Equal(g, v) || g == nil {
				t.Fatalf("option %d: %x, FromBytes %x", c, g, v)
			}
		}
		wantReq := want.IsOptionRequested(dhcpv4.OptionBootfileName)
		if prl, ok := want.Options[55]; ok && len(prl) == 0 {
			// An empty option 55 asks for nothing (as the server has always
			// read it); the library stores an empty option as nil and so
			// reads it as absent: everything requested.
			wantReq = false
		}
		if got.messageType() != want.MessageType() || got.requested() != addrOf(want.RequestedIPAddress()) ||
			got.serverID() != addrOf(want.ServerIdentifier()) || got.clientIP() != addrOf(want.ClientIPAddr) ||
			got.gateway() != addrOf(want.GatewayIPAddr) || got.hostName() != want.HostName() ||
			got.optionRequested(67) != wantReq {
			t.Fatalf("getters disagree: %+v\nFromBytes:\n%s", got, want)
		}
		if classify(got.chaddr, &got) != Classify(want) {
			t.Fatalf("classify: %+v, Classify: %+v", classify(got.chaddr, &got), Classify(want))
		}
	})
}
