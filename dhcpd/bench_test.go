package dhcpd

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// benchNodes is a cluster without nodes that costs nothing to ask, like
// the DHCP bench's: the benchmarks measure the server, not the fake.
type benchNodes struct{}

func (benchNodes) ByMAC(net.HardwareAddr) (Node, bool) { return Node{}, false }
func (benchNodes) ByIP(netip.Addr) (Node, bool)        { return Node{}, false }

// benchClients is how many clients the DORA benchmarks cycle through, as
// perfdhcp -R 50000 does in test/bench/dhcp.
const benchClients = 50000

// doraPackets builds, outside any timer, every client's relayed DISCOVER
// and the REQUEST for the address u offers it (u binds nothing: the
// REQUESTs are only built). Addresses are stable per client afterwards
// (a client's offer, then its lease, wins), so the REQUESTs stay valid.
func doraPackets(b *testing.B, u *unitServer) (discovers, requests [][]byte) {
	b.Helper()
	discovers = make([][]byte, benchClients)
	requests = make([][]byte, benchClients)
	for i := range benchClients {
		mac := net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		discovers[i] = discover(mac.String(), dhcpv4.WithGatewayIP(net.IPv4(10, 70, 0, 2))).ToBytes()
		rep, _, _ := u.handle(&packetIn{data: discovers[i], port: 67, received: time.Now()})
		if rep == nil {
			b.Fatal("no offer")
		}
		offer, err := dhcpv4.FromBytes(rep.msg.encode())
		if err != nil {
			b.Fatal(err)
		}
		req := requestFor(offer)
		req.GatewayIPAddr = offer.GatewayIPAddr
		requests[i] = req.ToBytes()
	}
	return discovers, requests
}

func benchConfig() Config {
	return Config{Mode: ModeFull, SkipProbe: true, RateLimit: -1, Now: time.Now,
		LeaseReuse: -1, // every REQUEST binds and writes, the bench's "no reuse" server
		Subnets: []Subnet{{
			Network: netip.MustParsePrefix("10.70.0.0/16"),
			Range:   Range{netip.MustParseAddr("10.70.1.0"), netip.MustParseAddr("10.70.255.254")},
			Router:  netip.MustParseAddr("10.70.0.1"),
		}}}
}

// BenchmarkDORA is the server's cost of one lease (one op = DISCOVER and
// REQUEST handled, OFFER and ACK encoded) without sockets, cycling over
// 50 000 clients. "handle" stops there; "commit" also queues the lease to
// the group commit (waited for at the end), so its ns/op includes the
// bbolt writes and fdatasyncs shared among the batch. The clients' side
// (building packets, parsing replies) is outside the timer.
func BenchmarkDORA(b *testing.B) {
	for _, commit := range []bool{false, true} {
		name := "handle"
		if commit {
			name = "commit"
		}
		b.Run(name, func(b *testing.B) {
			u := newUnitServer(b, benchConfig(), benchNodes{}, nil)
			discovers, requests := doraPackets(b, u)
			var wg sync.WaitGroup
			done := func(error, bool) { wg.Done() }
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				now := time.Now()
				rep, _, _ := u.handle(&packetIn{data: discovers[i], port: 67, received: now})
				if rep == nil {
					b.Fatal("no offer")
				}
				_ = rep.msg.encode()
				rep, _, _ = u.handle(&packetIn{data: requests[i], port: 67, received: now})
				if rep == nil || rep.commit == nil {
					b.Fatal("no ack")
				}
				_ = rep.msg.encode()
				if commit {
					wg.Add(1)
					u.committer.submit(commitOp{lease: rep.commit, done: done})
				}
				if i++; i == len(discovers) {
					i = 0
				}
			}
			wg.Wait()
		})
	}
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
