package dhcpd

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
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
// journal's fdatasyncs and the background moves into bbolt, shared among
// the batch; "commit-direct" is the same with Config.DirectCommit (each
// group commit a bbolt transaction, two fdatasyncs). cpu-ns/op is the
// process's user+system CPU per op (the kernel's share of a sync
// included), which is what the server takes from perfdhcp on a two-core
// machine. The clients' side (building packets, parsing replies) is
// outside the timer.
func BenchmarkDORA(b *testing.B) {
	for _, mode := range []string{"handle", "commit", "commit-direct"} {
		b.Run(mode, func(b *testing.B) {
			cfg := benchConfig()
			cfg.DirectCommit = mode == "commit-direct"
			commit := mode != "handle"
			u := newUnitServer(b, cfg, benchNodes{}, nil)
			discovers, requests := doraPackets(b, u)
			var wg sync.WaitGroup
			done := func(error, bool) { wg.Done() }
			i := 0
			b.ReportAllocs()
			cpu0 := processCPU()
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
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCommitOne is one lease per commit: the group commit's worst
// case, at low load (one fdatasync with the journal, two without).
func BenchmarkCommitOne(b *testing.B) {
	for _, mode := range []string{"journal", "direct"} {
		b.Run(mode, func(b *testing.B) {
			cfg := testConfig()
			cfg.DirectCommit = mode == "direct"
			u := newUnitServer(b, cfg, newFakeNodes(), nil)
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				l := Lease{IP: u32ToAddr(0x0a460100 + uint32(i%60000)), MAC: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)},
					State: LeaseBound, Expires: now.Add(time.Hour), Granted: now}
				done := make(chan struct{})
				u.committer.submit(commitOp{lease: &l, done: func(error, bool) { close(done) }})
				<-done
				i++
			}
		})
	}
}
