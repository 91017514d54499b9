package neigh

import (
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	table := []byte(`IP address       HW type     Flags       HW address            Mask     Device
10.99.0.100      0x1         0x2         52:54:00:12:34:56     *        br0
10.99.0.101      0x1         0x0         00:00:00:00:00:00     *        br0
10.99.0.102      0x1         0x6         52:54:00:12:34:58     *        br0
10.99.0.1000     0x1         0x2         52:54:00:12:34:57     *        br0
`)
	tests := []struct {
		ip, want string
	}{
		{"10.99.0.100", "52:54:00:12:34:56"},
		{"10.99.0.101", ""}, // incomplete entry
		{"10.99.0.102", "52:54:00:12:34:58"},
		{"10.99.0.10", ""}, // a prefix of another address
		{"10.99.0.7", ""},
	}
	for _, tt := range tests {
		mac, ok := Parse(table, netip.MustParseAddr(tt.ip))
		if got := mac.String(); ok != (tt.want != "") || got != tt.want {
			t.Errorf("%s: got %q %v, want %q", tt.ip, got, ok, tt.want)
		}
	}
}

func TestLookupOwnTable(t *testing.T) {
	// The table exists on every Linux host; an address never used is absent.
	if _, ok := Lookup(netip.MustParseAddr("192.0.2.77")); ok {
		t.Error("TEST-NET address found in the neighbour table")
	}
	tab, err := OpenARPTable()
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	if _, ok := tab.MACOf(netip.MustParseAddr("192.0.2.77")); ok {
		t.Error("TEST-NET address found through ARPTable")
	}
}
