package tftpd

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeNodes is a hand-written Nodes: nodes matched by serial (last 8
// digits), MAC, or a table of client addresses.
type fakeNodes struct {
	mu    sync.Mutex
	nodes []Node
	ips   map[netip.Addr]string
	err   error
	calls []NodeKey
	// panicIP makes a lookup from that address panic.
	panicIP netip.Addr
}

func (f *fakeNodes) LookupNode(_ context.Context, key NodeKey) (Node, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, key)
	if f.err != nil {
		return Node{}, false, f.err
	}
	if f.panicIP.IsValid() && key.IP == f.panicIP {
		panic("lookup bug reached by a crafted request")
	}
	for _, n := range f.nodes {
		switch {
		case key.Serial != "" && n.Serial != "" && strings.HasSuffix(n.Serial, key.Serial),
			key.MAC != nil && bytes.Equal(key.MAC, n.MAC),
			key.IP.IsValid() && f.ips[key.IP] == n.Name:
			return n, true, nil
		}
	}
	return Node{}, false, nil
}

func (f *fakeNodes) set(n Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.nodes {
		if f.nodes[i].Name == n.Name {
			f.nodes[i] = n
			return
		}
	}
	f.nodes = append(f.nodes, n)
}

type fakeRecorder struct {
	mu      sync.Mutex
	stages  []StageEvent
	unknown []UnknownClient
}

func (r *fakeRecorder) RecordStage(_ context.Context, ev StageEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stages = append(r.stages, ev)
}

func (r *fakeRecorder) RecordUnknown(_ context.Context, c UnknownClient) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unknown = append(r.unknown, c)
}

func (r *fakeRecorder) snapshot() ([]StageEvent, []UnknownClient) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]StageEvent(nil), r.stages...), append([]UnknownClient(nil), r.unknown...)
}

type fakeNeighbors map[netip.Addr]net.HardwareAddr

func (f fakeNeighbors) MACOf(ip netip.Addr) (net.HardwareAddr, bool) {
	m, ok := f[ip]
	return m, ok
}

// imageSDCmdline is Raspberry Pi OS Bookworm's cmdline.txt as written to an
// SD card.
const imageSDCmdline = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot cfg80211.ieee80211_regdom=GB\n"

// piBootFiles are the files of a small Raspberry Pi boot partition; binary
// files get random content of the given size.
var piBootFiles = map[string]int{
	"bootcode.bin":                52456,
	"start.elf":                   290120,
	"fixup.dat":                   7314,
	"start4.elf":                  229300,
	"fixup4.dat":                  5405,
	"bcm2710-rpi-3-b.dtb":         32142,
	"bcm2711-rpi-4-b.dtb":         54597,
	"overlays/vc4-kms-v3d.dtbo":   3913,
	"overlays/overlay_map.dtb":    5523,
	"kernel8.img":                 1 << 21,
	"kernel7.img":                 1<<20 + 13,
	"empty.bin":                   0,
	"exact-512.bin":               512,
	"exact-1024.bin":              1024,
	"initramfs8":                  300000,
	"issue.txt":                   100,
	"overlays/README":             1000,
	"dir.with.dots/../../escaped": -1, // never created: names with .. are refused first
}

// makePiImage writes a Pi boot directory and returns it with the contents.
func makePiImage(t testing.TB, configTxt string) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	for name, size := range piBootFiles {
		if size < 0 {
			continue
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		writeFile(t, filepath.Join(dir, name), data)
		files[name] = data
	}
	writeFile(t, filepath.Join(dir, "cmdline.txt"), []byte(imageSDCmdline))
	if configTxt != "" {
		writeFile(t, filepath.Join(dir, "config.txt"), []byte(configTxt))
	}
	return dir, files
}

func makeX86Image(t testing.TB) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{"vmlinuz": bytes.Repeat([]byte("K"), 700001), "initrd.img": bytes.Repeat([]byte("I"), 300003)}
	for name, data := range files {
		writeFile(t, filepath.Join(dir, name), data)
	}
	return dir, files
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
