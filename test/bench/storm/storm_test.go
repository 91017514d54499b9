package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseNFSRoot(t *testing.T) {
	tests := []struct {
		cmdline string
		want    nfsRoot
		err     bool
	}{
		{"console=tty1 root=/dev/nfs nfsroot=10.77.0.1:/nodes/pi001,vers=3,tcp,port=2049,mountport=2049,nolock rw ip=dhcp",
			nfsRoot{server: "10.77.0.1", export: "/nodes/pi001", port: 2049, mountPort: 2049}, false},
		{"nfsroot=10.77.0.1:/var/tmp/src,vers=3,tcp,port=2049,mountport=20048 rw",
			nfsRoot{server: "10.77.0.1", export: "/var/tmp/src", port: 2049, mountPort: 20048}, false},
		{"nfsroot=10.0.0.1:/x rw", nfsRoot{server: "10.0.0.1", export: "/x", port: 2049, mountPort: 2049}, false},
		{"root=/dev/mmcblk0p2 rw", nfsRoot{}, true},
		{"nfsroot=/nodes/x", nfsRoot{}, true},
	}
	for _, tt := range tests {
		got, err := parseNFSRoot(tt.cmdline)
		if (err != nil) != tt.err {
			t.Errorf("%q: err %v, want error %v", tt.cmdline, err, tt.err)
			continue
		}
		if !tt.err && got != tt.want {
			t.Errorf("%q: got %+v, want %+v", tt.cmdline, got, tt.want)
		}
	}
}

// Option 97 is 17 bytes for every model, with the forms PROTOCOLS.md gives.
func TestFirmwareOption97(t *testing.T) {
	pis := newPis(8)
	for _, p := range pis {
		g := p.firmwareDHCP().guid
		if len(g) != 17 || g[0] != 0 {
			t.Fatalf("%s (Pi %s): option 97 %x", p.name, p.model, g)
		}
		switch p.model {
		case pi3B:
			if !bytes.Equal(g[1:], bytes.Repeat([]byte{0x44}, 16)) {
				t.Errorf("3B option 97 %x", g)
			}
		case pi4, pi5:
			magic := map[model]string{pi4: "RPi4", pi5: "RPi5"}[p.model]
			if string(g[1:5]) != magic || !bytes.Equal(g[9:13], p.mac[2:]) {
				t.Errorf("Pi %s option 97 %x (mac %s)", p.model, g, p.mac)
			}
		}
		if (p.model == pi3B || p.model == pi3BPlus) && !strings.HasSuffix(p.prefix, strings.ReplaceAll(p.mac.String()[9:], ":", "")) {
			t.Errorf("b8:27:eb MAC %s does not end in the serial %s", p.mac, p.prefix)
		}
	}
}

func TestUDPPacketChecksum(t *testing.T) {
	pkt := udpPacket([]byte("hello"))
	if ipChecksum(pkt[:20]) != 0 {
		t.Errorf("IP header checksum does not verify: %x", pkt[:20])
	}
}
