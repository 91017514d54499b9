package dhcpd

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/prometheus/client_golang/prometheus"
)

func counterWith(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// Issue 18 row 4: thousands of PXE DISCOVERs with forged MACs. The
// discovered records stay within MaxDiscovered (the least recently seen
// go, counted), the database stays small, and a real node keeps getting its
// lease from udhcpc during and after the flood.
func TestNetnsDiscoveryFlood(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	nodes := newFakeNodes().add("02:00:00:00:00:aa", Node{Name: "n1", IP: netip.MustParseAddr("10.99.0.10"), Netboot: true})
	cfg := fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199")
	cfg.MaxDiscovered = 100
	db := openTestDB(t, "")
	srv, reg := l.serve(cfg, nodes, db)
	attacker := l.client("br0", "02:00:00:00:00:66", "")
	node := l.client("br0", "02:00:00:00:00:aa", "")

	var conn net.PacketConn
	if err := attacker.Do(func() error {
		var err error
		conn, err = nclient4.NewRawUDPConn("eth0", dhcpv4.ClientPort)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const flood = 3000
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	for i := 0; i < flood; i++ {
		mac := net.HardwareAddr{0x02, 0x66, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		pkt, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteTo(pkt.ToBytes(), bcast); err != nil {
			t.Fatal(err)
		}
		if i == flood/2 {
			if env := runUdhcpc(t, node); env["ip"] != "10.99.0.10" {
				t.Fatalf("node's lease during the flood: %q", env["ip"])
			}
		}
		if i%200 == 199 {
			time.Sleep(20 * time.Millisecond) // let the kernel's socket buffer drain
		}
	}
	// The flood is recorded, trimmed to the cap.
	deadline := time.Now().Add(20 * time.Second)
	for counterWith(reg, "pictl_dhcpd_discovered_dropped_total", "reason", dropCap) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the last commits
	list, err := srv.Store().Discovered()
	if err != nil {
		t.Fatal(err)
	}
	dropped := counterWith(reg, "pictl_dhcpd_discovered_dropped_total", "reason", dropCap)
	t.Logf("%d discovered records kept, %v dropped over the cap", len(list), dropped)
	if len(list) > cfg.MaxDiscovered {
		t.Errorf("%d discovered records, cap %d", len(list), cfg.MaxDiscovered)
	}
	// Most of the flood is not even written (over the rate of new
	// clients); what is written beyond the cap goes again.
	notWritten := metricValue(reg, "pictl_dhcpd_dropped_records_total")
	t.Logf("%v records not written (rate of new clients)", notWritten)
	if dropped+notWritten < flood-float64(cfg.MaxDiscovered)-50 {
		t.Errorf("only %v dropped over the cap and %v not written from a flood of %d", dropped, notWritten, flood)
	}
	if fi, err := os.Stat(db.Path()); err != nil || fi.Size() > 4<<20 {
		t.Errorf("runtime database %d bytes (err %v), want under 4 MiB", fi.Size(), err)
	}
	if env := runUdhcpc(t, node); env["ip"] != "10.99.0.10" {
		t.Fatalf("node's lease after the flood: %q", env["ip"])
	}
}

// Issue 18 row 5: a DHCPDECLINE carrying a node's MAC from another host
// must not quarantine the node's reserved address; the node still boots.
// A quarantine of a pool address can be cleared.
func TestNetnsSpoofedDeclineOfReservation(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	nodes := newFakeNodes().add("02:00:00:00:00:aa", Node{Name: "n1", IP: netip.MustParseAddr("10.99.0.10"), Netboot: true})
	srv, reg := l.serve(fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199"), nodes, nil)
	node := l.client("br0", "02:00:00:00:00:aa", "")
	if env := runUdhcpc(t, node); env["ip"] != "10.99.0.10" {
		t.Fatalf("node's lease: %q", env["ip"])
	}
	attacker := l.client("br0", "02:00:00:00:00:66", "")
	decline, err := dhcpv4.New(
		dhcpv4.WithHwAddr(mustMAC("02:00:00:00:00:aa")),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.99.0.10"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.99.0.1"))),
	)
	if err != nil {
		t.Fatal(err)
	}
	collectReplies(t, attacker, decline, 300*time.Millisecond) // DECLINE has no reply
	deadline := time.Now().Add(5 * time.Second)
	for requestsTotal(reg, outDeclineIgnored) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if requestsTotal(reg, outDeclineIgnored) < 1 { // collectReplies sends up to 3 times
		t.Fatalf("decline_ignored %v, want at least 1", requestsTotal(reg, outDeclineIgnored))
	}
	if q := srv.Quarantined(); len(q) != 0 {
		t.Fatalf("quarantined after a spoofed DECLINE: %v", q)
	}
	if env := runUdhcpc(t, node); env["ip"] != "10.99.0.10" {
		t.Fatalf("node's lease after the spoofed DECLINE: %q", env["ip"])
	}

	// A pool address declined by its holder is quarantined, and can be
	// cleared.
	other := l.client("br0", "02:00:00:00:00:bb", "")
	env := runUdhcpc(t, other)
	pool := netip.MustParseAddr(env["ip"])
	decline.ClientHWAddr = mustMAC("02:00:00:00:00:bb")
	decline.UpdateOption(dhcpv4.OptRequestedIPAddress(pool.AsSlice()))
	collectReplies(t, other, decline, 300*time.Millisecond)
	deadline = time.Now().Add(5 * time.Second)
	for len(srv.Quarantined()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := srv.Quarantined()[pool]; !ok {
		t.Fatalf("pool address %s not quarantined by its holder's DECLINE", pool)
	}
	if err := srv.ClearQuarantine(pool); err != nil {
		t.Fatal(err)
	}
	if len(srv.Quarantined()) != 0 {
		t.Fatal("quarantine not cleared")
	}
	leases, _ := srv.Store().Leases()
	for _, l := range leases {
		if l.IP == pool && l.State == LeaseDeclined {
			t.Errorf("declined record of %s still on disk", pool)
		}
	}
}

// panickyNodes panics on one MAC, as a bug reached by a crafted packet
// would.
type panickyNodes struct {
	*fakeNodes
	bad string
}

func (p panickyNodes) ByMAC(mac net.HardwareAddr) (Node, bool) {
	if mac.String() == p.bad {
		var m map[string]int
		m["boom"]++ // nil map write: a runtime panic
	}
	return p.fakeNodes.ByMAC(mac)
}

// A panic while handling one packet is logged, counted and contained: the
// server keeps serving udhcpc.
func TestNetnsPanicContained(t *testing.T) {
	l := newLab(t, "10.99.0.1/24")
	nodes := panickyNodes{fakeNodes: newFakeNodes(), bad: "02:00:00:00:00:66"}
	_, reg := l.serve(fullConfig("10.99.0.0/24", "10.99.0.100", "10.99.0.199"), nodes, nil)
	attacker := l.client("br0", "02:00:00:00:00:66", "")
	collectReplies(t, attacker, discover("02:00:00:00:00:66"), 300*time.Millisecond)
	if got := counterWith(reg, "pictl_dhcpd_panics_total", "where", "packet"); got < 1 {
		t.Fatalf("panics counted %v, want at least 1", got)
	}
	if env := runUdhcpc(t, l.client("br0", "02:00:00:00:00:01", "")); env["ip"] == "" {
		t.Fatal("no lease after a panicking packet")
	}
}
