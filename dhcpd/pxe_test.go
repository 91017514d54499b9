package dhcpd

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The bytes PROTOCOLS.md gives for option 43 (dnsmasq's encoding of
// pxe-service=0,"Raspberry Pi Boot"), plain and with the padded label.
func TestPiVendorOptionsBytes(t *testing.T) {
	label := hex.EncodeToString([]byte("Raspberry Pi Boot"))
	plain := "060103" + "0a0400505845" + "091400" + "0011" + label + "ff"
	padded := "060103" + "0a0400505845" + "091700" + "0014" + label + "202020" + "ff"
	if got := hex.EncodeToString(PiVendorOptions(false)); got != plain {
		t.Errorf("plain option 43 =\n%s\nwant\n%s", got, plain)
	}
	if got := hex.EncodeToString(PiVendorOptions(true)); got != padded {
		t.Errorf("padded option 43 =\n%s\nwant\n%s", got, padded)
	}
	// dnsmasq logged 32 bytes for the plain form on a real Pi 4 boot.
	if n := len(PiVendorOptions(false)); n != 32 {
		t.Errorf("plain option 43 is %d bytes, dnsmasq sends 32", n)
	}
}

func TestDecodePXEVendorOptions(t *testing.T) {
	for _, padded := range []bool{false, true} {
		v, err := DecodePXEVendorOptions(PiVendorOptions(padded))
		if err != nil {
			t.Fatal(err)
		}
		if !v.HasDiscoveryControl || v.DiscoveryControl != 3 || v.MenuTimeout != 0 || v.MenuPrompt != "PXE" || !v.Terminated {
			t.Errorf("padded=%v: decoded %+v", padded, v)
		}
		if len(v.Menu) != 1 || v.Menu[0].Type != 0 || !strings.HasPrefix(v.Menu[0].Label, PiBootLabel) {
			t.Errorf("padded=%v: menu %+v", padded, v.Menu)
		}
		// What a Pi 4 does: compare the label ignoring trailing characters.
		if strings.TrimRight(v.Menu[0].Label, " ") != PiBootLabel {
			t.Errorf("padded=%v: label %q", padded, v.Menu[0].Label)
		}
	}
}

func TestDecodePXEVendorOptionsRejectsTruncation(t *testing.T) {
	full := PiVendorOptions(true)
	for n := 1; n < len(full)-1; n++ {
		v, err := DecodePXEVendorOptions(full[:n])
		if err == nil && v.Terminated {
			t.Errorf("truncated to %d bytes decoded as complete: %+v", n, v)
		}
	}
	if _, err := DecodePXEVendorOptions([]byte{9, 5, 0, 0, 9, 'a'}); err == nil {
		t.Error("menu item longer than its sub-option accepted")
	}
}

func TestIPXENoPXEDHCP(t *testing.T) {
	if !bytes.Equal(ipxeNoPXEDHCP, []byte{0xb0, 0x01, 0x01}) {
		t.Errorf("option 175 = %x, want b00101", ipxeNoPXEDHCP)
	}
}

func TestRouterAdvertisementBytes(t *testing.T) {
	got := routerAdvertisement([]byte{2, 0, 0, 0, 0, 1})
	want := []byte{134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1}
	if !bytes.Equal(got, want) {
		t.Errorf("RA = %x, want %x (router lifetime 0, no prefix)", got, want)
	}
}

func TestEncodeReplyMatchesLibrary(t *testing.T) {
	var m replyMsg
	m.init()
	m.typ, m.hwType, m.xid, m.flags = dhcpv4.MessageTypeOffer, 1, dhcpv4.TransactionID{1, 2, 3, 4}, 0x8000
	m.chaddr = mustMAC("02:00:00:00:00:01")
	m.yiaddr, m.siaddr = netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.1")
	m.file = "boot.ipxe"
	m.set(82, []byte{1, 2, 'a', 'b'})
	m.set(17, bytes.Repeat([]byte("x"), 300))
	m.set(43, nil)
	m.set(1, []byte{255, 255, 255, 0})
	m.set(1, []byte{255, 255, 0, 0}) // replaces
	wire := m.encode()
	got, err := dhcpv4.FromBytes(wire)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := dhcpv4.FromBytes(m.library().ToBytes())
	if got.String() != want.String() || !bytes.Equal(opt(got, 17), opt(want, 17)) || !bytes.Equal(opt(got, 1), []byte{255, 255, 0, 0}) {
		t.Errorf("encode:\n%s\nlibrary:\n%s", got, want)
	}
	if len(wire) < 300 || wire[240] != 53 {
		t.Errorf("%d bytes, first option %d: want ≥ 300 and 53 first", len(wire), wire[240])
	}
	if i := bytes.Index(wire[240:], []byte{82, 4, 1, 2, 'a', 'b', 255}); i < 0 {
		t.Error("option 82 is not last")
	}
}
