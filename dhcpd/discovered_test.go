package dhcpd

import (
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
