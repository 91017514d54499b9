package dhcpd

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkDORA is the CPU cost of one full lease (DISCOVER, REQUEST, the
// group-committed record) without sockets.
func BenchmarkDORA(b *testing.B) {
	cfg := Config{Mode: ModeFull, SkipProbe: true, RateLimit: -1, Now: time.Now, Subnets: []Subnet{{
		Network: netip.MustParsePrefix("10.70.0.0/16"),
		Range:   Range{netip.MustParseAddr("10.70.1.0"), netip.MustParseAddr("10.70.255.254")},
		Router:  netip.MustParseAddr("10.70.0.1"),
	}}}
	u := newUnitServer(b, cfg, newFakeNodes(), nil)
	// Pre-build the packets: the benchmark measures the server.
	n := b.N
	discovers := make([][]byte, n)
	for i := range n {
		mac := net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		discovers[i] = discover(mac.String(), dhcpv4.WithGatewayIP(net.IPv4(10, 70, 0, 2))).ToBytes()
	}
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for i := range n {
		rep, _, _ := u.handle(&packetIn{data: discovers[i], port: 67, received: time.Now()})
		if rep == nil {
			b.Fatal("no offer")
		}
		offer, err := dhcpv4.FromBytes(rep.msg.encode())
		if err != nil {
			b.Fatal(err)
		}
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		req.GatewayIPAddr = offer.GatewayIPAddr
		rep, _, _ = u.handle(&packetIn{data: req.ToBytes(), port: 67, received: time.Now()})
		if rep == nil || rep.commit == nil {
			b.Fatal("no ack")
		}
		_ = rep.msg.encode()
		wg.Add(1)
		u.committer.submit(commitOp{lease: rep.commit, done: func(error, bool) { wg.Done() }})
	}
	wg.Wait()
}

// BenchmarkCommitOne is one lease per transaction: the group commit's
// worst case, at low load.
func BenchmarkCommitOne(b *testing.B) {
	u := newUnitServer(b, testConfig(), newFakeNodes(), nil)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l := Lease{IP: u32ToAddr(0x0a460100 + uint32(i%60000)), MAC: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)},
			State: LeaseBound, Expires: now.Add(time.Hour), Granted: now}
		done := make(chan struct{})
		u.committer.submit(commitOp{lease: &l, done: func(error, bool) { close(done) }})
		<-done
	}
}
