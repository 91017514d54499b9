package dhcpd

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Discovered clients over the cap go least recently seen first; clients
// not seen for DiscoveredExpiry expire (issue 18 row 4).
func TestDiscoveredCapAndExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.MaxDiscovered = 3
	cfg.DiscoveredExpiry = time.Hour
	u := newUnitServer(t, cfg, newFakeNodes(), nil)
	pxe := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))
	macs := []string{"02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:04"}
	for _, m := range macs {
		u.exchange(discover(m, pxe))
		u.flush()
		u.clock.Add(time.Minute)
	}
	list, err := u.Store().Discovered()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range list {
		got = append(got, d.MAC.String())
	}
	if len(got) != 3 || got[0] != macs[1] || got[2] != macs[3] {
		t.Fatalf("kept %v, want the three most recently seen %v", got, macs[1:])
	}
	// 02 and 03 were last seen over an hour before; 04 just under.
	u.clock.Add(time.Hour - 90*time.Second)
	u.expireDiscovered(u.clock.Now())
	list, _ = u.Store().Discovered()
	if len(list) != 1 || list[0].MAC.String() != macs[3] {
		t.Fatalf("after expiry: %v, want only %s", list, macs[3])
	}
}

// Spoofed DECLINEs carrying a node's MAC do not use up the node's rate
// allowance: its next DISCOVER is still answered (found by the soak in
// test/hardening).
func TestSpoofedDeclinesDoNotRateLimitTheNode(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 1, 2
	nodes := newFakeNodes().add("02:00:00:00:00:aa", Node{Name: "n1", IP: netip.MustParseAddr("10.99.0.10"), Netboot: true})
	u := newUnitServer(t, cfg, nodes, nil)
	for range 50 {
		decline := discover("02:00:00:00:00:aa", dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.99.0.10"))))
		if _, _, outcome := u.exchange(decline); outcome != outDeclineIgnored {
			t.Fatalf("DECLINE of the reservation: %s", outcome)
		}
	}
	if _, _, outcome := u.exchange(discover("02:00:00:00:00:aa")); outcome != outOffer {
		t.Fatalf("node's DISCOVER after the DECLINEs: %s, want %s", outcome, outOffer)
	}
}
