package dhcpd

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// readPacket reads a testdata/packets fixture: '#' comment lines, then the
// packet as hex.
func readPacket(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "packets", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hx strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			hx.WriteString(l)
		}
	}
	b, err := hex.DecodeString(hx.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func parsePacket(t testing.TB, name string) *dhcpv4.DHCPv4 {
	t.Helper()
	p, err := dhcpv4.FromBytes(readPacket(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

func TestClassifyFixtures(t *testing.T) {
	tests := []struct {
		file     string
		class    Class
		serial   string
		boardRev uint32
		arch     uint16
	}{
		{"ipxe-discover.hex", ClassIPXE, "", 0, 0},
		{"pi3b-discover.hex", ClassPi3B, "", 0, 0},
		{"pi3bplus-discover.hex", ClassPi3BPlus, "4f123456", 0, 0},
		{"pi4-discover.hex", ClassPi4, "5b154510", 0xa03111, 0},
		{"udhcpc-fakepi4-discover.hex", ClassPi4, "5b154510", 0xa03111, 0},
		{"pi4-oldeeprom-discover.hex", ClassPi4, "5b154510", 0, 0},
		{"pi5-discover.hex", ClassPi5, "8badf00d", 0xc04170, 0},
		{"pi-unknown-discover.hex", ClassPi, "", 0, 0},
		{"pxe-uefi-discover.hex", ClassPXE, "", 0, 7},
		{"udhcpc-plain-discover.hex", ClassOS, "", 0, 0},
		{"udhcpc-initramfs-discover.hex", ClassOS, "", 0, 0},
		{"dhclient-discover.hex", ClassOS, "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c := Classify(parsePacket(t, tt.file))
			if c.Class != tt.class || c.Serial != tt.serial || c.BoardRevision != tt.boardRev || c.Arch != tt.arch {
				t.Errorf("Classify = %+v, want class %s serial %q board %#x arch %d", c, tt.class, tt.serial, tt.boardRev, tt.arch)
			}
		})
	}
}

// The capture shows what PROTOCOLS.md says about iPXE: the same option 60
// as a Pi, option 77 as 4 raw bytes, option 175 present.
func TestIPXECaptureFacts(t *testing.T) {
	p := parsePacket(t, "ipxe-discover.hex")
	if got := string(p.Options.Get(dhcpv4.GenericOptionCode(60))); got != "PXEClient:Arch:00000:UNDI:002001" {
		t.Errorf("option 60 = %q", got)
	}
	if got := p.Options.Get(dhcpv4.GenericOptionCode(77)); !bytes.Equal(got, []byte("iPXE")) {
		t.Errorf("option 77 = %x", got)
	}
	if !p.Options.Has(dhcpv4.GenericOptionCode(175)) {
		t.Error("no option 175")
	}
}

func TestClassifyRules(t *testing.T) {
	pi4GUID := []byte{0, 'R', 'P', 'i', '4', 0x11, 0x31, 0xa0, 0, 1, 2, 3, 4, 0x10, 0x45, 0x15, 0x5b}
	mk := func(mac string, opts ...dhcpv4.Option) *dhcpv4.DHCPv4 {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			t.Fatal(err)
		}
		p, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionParameterRequestList, []byte{1, 3, 43})))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range opts {
			p.UpdateOption(o)
		}
		return p
	}
	vc := dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")
	guid := func(b []byte) dhcpv4.Option { return dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(97), b) }
	tests := []struct {
		name string
		pkt  *dhcpv4.DHCPv4
		want Class
	}{
		{"Pi OUI alone is not a Pi", mk("dc:a6:32:01:02:03"), ClassOS},
		{"RPi4 magic without PXEClient is not a Pi", mk("dc:a6:32:01:02:03", guid(pi4GUID)), ClassOS},
		{"RPi4 magic with a foreign OUI is a Pi 4", mk("02:00:00:01:02:03", vc, guid(pi4GUID)), ClassPi4},
		{"PXEClient on a foreign OUI without magic is PXE", mk("02:00:00:01:02:03", vc), ClassPXE},
		{"RFC 3004 user class iPXE", mk("02:00:00:01:02:03", vc, dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(77), []byte{4, 'i', 'P', 'X', 'E'})), ClassIPXE},
		{"option 175 alone is iPXE", mk("02:00:00:01:02:03", dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{0x13, 1, 1})), ClassIPXE},
		{"iPXE on a Pi OUI is iPXE", mk("dc:a6:32:01:02:03", vc, dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{0x13, 1, 1})), ClassIPXE},
		{"user class other than iPXE", mk("02:00:00:01:02:03", dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(77), []byte("foo"))), ClassOS},
		{"truncated RFC 3004 list", mk("02:00:00:01:02:03", dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(77), []byte{9, 'i'})), ClassOS},
		{"b8:27:eb without 97 asking for 1/3 is a 3B+", mk("b8:27:eb:01:02:03", vc), ClassPi3BPlus},
		{"short option 97 on a Pi 4 OUI", mk("dc:a6:32:01:02:03", vc, guid([]byte{0, 1, 2})), ClassPi},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.pkt).Class; got != tt.want {
				t.Errorf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestClassNames(t *testing.T) {
	for c := ClassOS; c < numClasses; c++ {
		got, err := ParseClass(c.String())
		if err != nil || got != c {
			t.Errorf("ParseClass(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseClass("toaster"); err == nil {
		t.Error("ParseClass accepted an unknown class")
	}
}
