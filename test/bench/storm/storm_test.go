package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
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

func TestPaceSet(t *testing.T) {
	tests := []struct {
		entry string
		check func(p [numModels]modelPace) bool
		err   bool
	}{
		{"4.power-on=5.2s", func(p [numModels]modelPace) bool {
			return p[pi4].powerOn == 5200*time.Millisecond && p[pi5].powerOn == defaultPace()[pi5].powerOn
		}, false},
		{"all.userspace=10s", func(p [numModels]modelPace) bool {
			return p[pi3B].userspace == 10*time.Second && p[pi5].userspace == 10*time.Second
		}, false},
		{"3B+.rate-elf=2MB", func(p [numModels]modelPace) bool {
			return p[pi3BPlus].rate[ldElf] == 2e6 && p[pi3B].rate[ldElf] == defaultPace()[pi3B].rate[ldElf]
		}, false},
		{"5.kernel-up=0s", func(p [numModels]modelPace) bool { return p[pi5].kernelUp == 0 }, false},
		{"6.power-on=1s", nil, true},
		{"4.warp=1s", nil, true},
		{"4.rate-elf=0", nil, true},
		{"4.power-on=-1s", nil, true},
		{"power-on=1s", nil, true},
	}
	for _, tt := range tests {
		pc := pacing{models: defaultPace()}
		err := pc.set(tt.entry)
		if (err != nil) != tt.err {
			t.Errorf("%q: err %v, want error %v", tt.entry, err, tt.err)
			continue
		}
		if !tt.err && !tt.check(pc.models) {
			t.Errorf("%q: not applied: %+v", tt.entry, pc.models)
		}
	}
}

// Jitter stays in bounds and is the same for the same Pi and seed, so
// every server meets the same boards.
func TestPacerJitter(t *testing.T) {
	pc := &pacing{models: defaultPace(), jitter: 0.2, seed: 1}
	p := newPis(3)[2]
	draw := func() []float64 {
		pp := pc.forPi(p, &bootResult{})
		var out []float64
		for range 100 {
			out = append(out, pp.factor())
		}
		return out
	}
	a, b := draw(), draw()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d differs: %v vs %v", i, a[i], b[i])
		}
		if a[i] < 0.8 || a[i] > 1.2 {
			t.Fatalf("factor %v out of [0.8, 1.2]", a[i])
		}
	}
	var none *pacer
	if none.powerOn() != 0 || none.rate(ldElf) != 0 || none.span() != 0 {
		t.Error("a nil pacer must not pace")
	}
}

// The loaders run in order (ROM, bootcode.bin, start*.elf), each model's
// kernel comes from its last loader, and a Pi 5 has only its EEPROM.
func TestSequenceLoaders(t *testing.T) {
	for m := range numModels {
		seq := m.tftpSequence()
		last := ldROM
		for _, s := range seq {
			if s.loader < last {
				t.Errorf("Pi %s: %s asked by loader %d after loader %d", m, s.name, s.loader, last)
			}
			last = s.loader
			if m == pi5 && s.loader != ldROM {
				t.Errorf("Pi 5: %s not from the EEPROM", s.name)
			}
		}
		if m != pi5 && last != ldElf {
			t.Errorf("Pi %s: the kernel is not loaded by start*.elf", m)
		}
	}
}

func TestPaceTable(t *testing.T) {
	pc := &pacing{models: defaultPace(), jitter: 0.2, seed: 1}
	tab := pc.table()
	for _, want := range []string{"Pi 3B+", "rate-elf", "4.9MB/s", "userspace"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	t.Log("\n" + tab)
}
