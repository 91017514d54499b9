package tftpd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusals over the wire: each gets a proper ERROR whose text names no host
// path, and only unknown clients are reported as discovered.
func TestRefusalsOverTheWire(t *testing.T) {
	h := newHarness(t, nil)
	if err := os.Symlink("/etc/passwd", filepath.Join(h.piDir, "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../..", filepath.Join(h.piDir, "up")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		client, name, msg string
	}{
		{"127.0.0.4", "../../../../etc/passwd", "access violation"},
		{"127.0.0.4", "d2e4f6a8/../../etc/passwd", "access violation"},
		{"127.0.0.4", "/etc/passwd", "access violation"},
		{"127.0.0.4", `..\..\etc\passwd`, "access violation"},
		{"127.0.0.4", "passwd", "access violation"},
		{"127.0.0.4", "d2e4f6a8/passwd", "access violation"},
		{"127.0.0.4", "up/etc/passwd", "access violation"},
		{"127.0.0.4", strings.Repeat("x", 300), "access violation"},
		{"127.0.0.4", "", "access violation"},
		{"127.0.0.4", "nothing-here.bin", "file not found"},
		{"127.0.0.4", "overlays", "file not found"},
		{"127.0.0.9", "bootcode.bin", "file not found"},                 // unknown client
		{"127.0.0.9", "ffffffff/start4.elf", "file not found"},          // unknown serial
		{"127.0.0.9", "00-11-22-33-44-55/start4.elf", "file not found"}, // unknown MAC
	}
	for _, tt := range tests {
		c := h.client(tt.client)
		res, err := c.get(tt.name, rawOpts{options: []string{"tsize", "0", "blksize", "1024"}})
		if err != nil {
			t.Fatalf("%q: %v", tt.name, err)
		}
		if res.errCode != 1 || res.errMsg != tt.msg {
			t.Errorf("%q: got ERROR %d %q, want %q", tt.name, res.errCode, res.errMsg, tt.msg)
		}
		if strings.Contains(res.errMsg, h.piDir) || strings.Contains(res.errMsg, "/") {
			t.Errorf("%q: error text %q shows a path", tt.name, res.errMsg)
		}
	}
	c := h.client("127.0.0.4")
	res, err := c.put("upload.bin")
	if err != nil || res.errMsg != "read-only server" {
		t.Errorf("WRQ: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(h.piDir, "upload.bin")); err == nil {
		t.Error("a write request created a file")
	}
	h.settle()
	_, unknown := h.rec.snapshot()
	if len(unknown) != 3 {
		t.Fatalf("unknown clients: %+v", unknown)
	}
	if unknown[0].IP.String() != "127.0.0.9" || unknown[0].File != "bootcode.bin" ||
		unknown[1].Serial != "ffffffff" || unknown[2].MAC.String() != "00:11:22:33:44:55" {
		t.Errorf("unknown clients: %+v", unknown)
	}
	if n := h.count(OutcomeDenied); n != 9 {
		t.Errorf("denied = %d, want 9", n)
	}
}

// More concurrent transfers from one address than allowed: the extra one is
// refused at once; the others complete.
func TestPerClientLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxTransfersPerClient = 2; c.Timeout = 100 * time.Millisecond; c.Retries = 2 })
	// Two transfers held open: request, receive block 1, do not ACK yet.
	held := make([]*rawClient, 2)
	for i := range held {
		c := h.client("127.0.0.4")
		if err := c.request(opcRRQ, "kernel8.img", nil); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 600)
		if _, _, err := c.read(buf); err != nil {
			t.Fatal(err)
		}
		held[i] = c
	}
	third := h.client("127.0.0.4")
	res, err := third.get("kernel8.img", rawOpts{})
	if err != nil || res.errMsg != "too many transfers from this client" {
		t.Fatalf("third transfer: %+v %v", res, err)
	}
	// Another client is not affected.
	other := h.client("127.0.0.3")
	if res, err := other.get("0a1b2c3d/fixup.dat", rawOpts{}); err != nil || res.errCode != -1 {
		t.Fatalf("other client: %+v %v", res, err)
	}
	for _, c := range held {
		c.Close() // abandon: the server times out after Timeout × Retries
	}
	if n := h.count(OutcomeBusy); n != 1 {
		t.Errorf("busy = %d", n)
	}
}

// Garbage and stray packets on the request port are dropped and counted;
// the server keeps serving.
func TestMalformedPackets(t *testing.T) {
	h := newHarness(t, nil)
	conn, err := net.DialUDP("udp4", nil, h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range [][]byte{
		{},
		{0},
		{0, 99, 1, 2, 3},
		{0, opcACK, 0, 1},           // stray ACK
		{0, opcDATA, 0, 1, 'x'},     // stray DATA
		{0, opcRRQ, 'a'},            // no terminator, no mode
		{0, opcERROR, 0, 0, 'x', 0}, // stray ERROR
		[]byte("\x00\x01\xff\xfe\x00octet\x00blksize\x00-5\x00"), // bad name, bad option
	} {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	c := h.client("127.0.0.4")
	res, err := c.get("d2e4f6a8/fixup4.dat", rawOpts{options: []string{"blksize", "99999999", "tsize", "x"}})
	if err != nil || res.errCode != -1 {
		t.Fatalf("after garbage: %+v %v", res, err)
	}
	h.settle()
	time.Sleep(50 * time.Millisecond) // the request loop counts asynchronously
	if dropped := counterValue(t, h.srv.m.badPackets); dropped < 5 {
		t.Errorf("dropped_packets_total = %v, want >= 5", dropped)
	}
}

// A changed answer from Nodes applies to the very next request: no restart.
func TestReloadAppliesPerRequest(t *testing.T) {
	h := newHarness(t, nil)
	c := h.client("127.0.0.4")
	res, _ := c.get("cmdline.txt", rawOpts{})
	if strings.Contains(string(res.data), "quiet=0") {
		t.Fatal("unexpected cmdline")
	}
	n := h.nodes.nodes[2]
	n.Cmdline = "loglevel=7"
	n.NFSExport = "/nodes/pi4-renamed"
	h.nodes.set(n)
	res, _ = c.get("cmdline.txt", rawOpts{})
	if !strings.Contains(string(res.data), "nfsroot=127.0.0.1:/nodes/pi4-renamed,") || !strings.HasSuffix(string(res.data), " loglevel=7\n") {
		t.Errorf("after reload: %q", res.data)
	}
	n.Netboot = false
	h.nodes.set(n)
	if res, _ = c.get("cmdline.txt", rawOpts{}); res.errMsg != "file not found" {
		t.Errorf("after netboot off: %+v", res)
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{}, &fakeNodes{}, nil, nil, reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"pictl_tftp_sent_bytes_total", "pictl_tftp_active_transfers", "pictl_tftp_dropped_packets_total", "pictl_tftp_cache_bytes"} {
		if !names[want] {
			t.Errorf("metric %s not registered (have %v)", want, names)
		}
	}
	// A second server on the same registry is an error, not a panic.
	if _, err := New(Config{}, &fakeNodes{}, nil, nil, reg); err == nil {
		t.Error("duplicate registration accepted")
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.Addr != ":69" || c.MaxBlockSize != 1468 || c.Timeout != time.Second || c.Retries != 5 ||
		c.MaxTransfersPerClient != 8 || c.NFSPort != 2049 || c.CacheBytes != 256<<20 {
		t.Errorf("defaults: %+v %v", c, err)
	}
	if _, err := (Config{MaxBlockSize: 512}).withDefaults(); err == nil {
		t.Error("MaxBlockSize 512 accepted (the library cannot cap at 512)")
	}
}
