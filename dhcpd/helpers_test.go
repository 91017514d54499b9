package dhcpd

import (
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"go.etcd.io/bbolt"
)

// fakeNodes is a Nodes backed by a map the test can change at any time.
type fakeNodes struct {
	mu    sync.Mutex
	nodes map[string]Node // by MAC string
}

func newFakeNodes() *fakeNodes { return &fakeNodes{nodes: map[string]Node{}} }

func (f *fakeNodes) add(mac string, n Node) *fakeNodes {
	f.mu.Lock()
	defer f.mu.Unlock()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		panic(err)
	}
	f.nodes[hw.String()] = n
	return f
}

func (f *fakeNodes) ByMAC(mac net.HardwareAddr) (Node, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[mac.String()]
	return n, ok
}

func (f *fakeNodes) ByIP(ip netip.Addr) (Node, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nodes {
		if n.IP == ip {
			return n, true
		}
	}
	return Node{}, false
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openTestDB(t testing.TB, path string) *bbolt.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "runtime.db")
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

const testIfIndex = 7

// testIface is the interface unit tests pretend packets arrive on.
var testIface = &ifaceInfo{
	index: testIfIndex, name: "br0", up: true,
	mac:   net.HardwareAddr{2, 0, 0, 0, 0, 1},
	addrs: []netip.Prefix{netip.MustParsePrefix("10.99.0.1/24")},
}

func staticIfaces(ifcs ...*ifaceInfo) *ifaceTable {
	m := map[int]*ifaceInfo{}
	for _, i := range ifcs {
		m[i.index] = i
	}
	t := &ifaceTable{fd: -1, last: time.Now().Add(time.Hour)}
	t.current.Store(&m)
	return t
}

func testConfig() Config {
	return Config{
		Mode: ModeFull,
		Subnets: []Subnet{{
			Network: netip.MustParsePrefix("10.99.0.0/24"),
			Range:   Range{netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.199")},
			Router:  netip.MustParseAddr("10.99.0.254"),
			DNS:     []netip.Addr{netip.MustParseAddr("10.99.0.53")},
			Domain:  "pi.test",
		}},
		SkipProbe: true,
	}
}

// unitServer is a Server without sockets: packets go straight to handle.
type unitServer struct {
	*Server
	t     testing.TB
	clock *fakeClock
	db    *bbolt.DB
	stop  func()
}

func newUnitServer(t testing.TB, cfg Config, nodes Nodes, db *bbolt.DB) *unitServer {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if db == nil {
		db = openTestDB(t, "")
	}
	s, err := New(cfg, nodes, db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.ifaces = staticIfaces(testIface)
	var wg sync.WaitGroup
	wg.Go(func() { s.committer.run(nil) })
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(s.committer.ch)
			wg.Wait()
		}
	}
	t.Cleanup(stop)
	return &unitServer{Server: s, t: t, clock: clock, db: db, stop: stop}
}

// exchange runs pkt through the server as if it arrived on the test
// interface and returns the reply (after its commit, if it needs one).
func (u *unitServer) exchange(pkt *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *reply, string) {
	u.t.Helper()
	return u.exchangeOn(pkt, testIfIndex, 67)
}

func (u *unitServer) exchangeOn(pkt *dhcpv4.DHCPv4, ifIndex, port int) (*dhcpv4.DHCPv4, *reply, string) {
	u.t.Helper()
	in := &packetIn{data: pkt.ToBytes(), ifIndex: ifIndex, port: port, received: time.Now(),
		src: netip.MustParseAddrPort("0.0.0.0:68")}
	rep, _, outcome := u.handle(in)
	if rep == nil {
		return nil, nil, outcome
	}
	if rep.commit != nil {
		done := make(chan error, 1)
		u.committer.submit(commitOp{lease: rep.commit, done: func(err error, _ bool) { done <- err }})
		if err := <-done; err != nil {
			u.t.Fatalf("commit: %v", err)
		}
	}
	// Round-trip through the bytes the server sends, as the client
	// would see them.
	wire := rep.msg.encode()
	out, err := dhcpv4.FromBytes(wire)
	if err != nil {
		u.t.Fatalf("reply does not parse: %v", err)
	}
	if len(wire) < 300 || wire[240] != 53 {
		u.t.Fatalf("reply is %d bytes, first option %d: want ≥ 300 and 53 first", len(wire), wire[240])
	}
	return out, rep, outcome
}

// flush waits until every queued commit is on disk.
func (u *unitServer) flush() {
	done := make(chan struct{})
	u.committer.submit(commitOp{done: func(error, bool) { close(done) }})
	<-done
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

func discover(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	p, err := dhcpv4.NewDiscovery(mustMAC(mac), mods...)
	if err != nil {
		panic(err)
	}
	return p
}

// requestFor builds the SELECTING-state REQUEST for offer.
func requestFor(offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	p, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		panic(err)
	}
	return p
}

func packetFromFixture(t testing.TB, name string) *dhcpv4.DHCPv4 { return parsePacket(t, name) }

// library builds the same reply with the library, to check encode.
func (m *replyMsg) library() *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootReply, HWType: iana.HWType(m.hwType), HopCount: m.hops,
		TransactionID: m.xid, Flags: m.flags, ClientHWAddr: m.chaddr, BootFileName: m.file,
		ClientIPAddr: m.ciaddr.AsSlice(), YourIPAddr: m.yiaddr.AsSlice(),
		ServerIPAddr: m.siaddr.AsSlice(), GatewayIPAddr: m.giaddr.AsSlice(),
		Options: dhcpv4.Options{53: {byte(m.typ)}},
	}
	for _, o := range m.opts {
		d.Options[o.code] = o.val
	}
	return d
}
