package tftpd

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// harness runs a real server on loopback with a small cluster:
//
//	pi3   serial 0a1b2c3d, Pi image, node config.txt and cmdline extras, 127.0.0.3
//	pi3ip Pi 3 known only by its address 127.0.0.13 (serial not configured)
//	pi4   serial d2e4f6a8, MAC dc:a6:32:01:36:c2, 127.0.0.4
//	vm1   kernel+initrd image, 127.0.0.1 (library clients bind 0.0.0.0)
//	off   serial 0ff0ff00, netboot disabled, 127.0.0.6
//
// 127.0.0.9 is an unknown client.
type harness struct {
	t        *testing.T
	srv      *Server
	addr     *net.UDPAddr
	nodes    *fakeNodes
	rec      *fakeRecorder
	piDir    string
	piFiles  map[string][]byte
	x86Files map[string][]byte
	logs     *lockedBuffer
}

const harnessConfigTxt = "arm_64bit=1\nenable_uart=0\n"

func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	piDir, piFiles := makePiImage(t, harnessConfigTxt)
	x86Dir, x86Files := makeX86Image(t)
	pi := Image{Name: "rpi-os", Kind: ImagePi, BootDir: piDir, Cmdline: "net.ifnames=0"}
	x86 := Image{Name: "debian", Kind: ImageKernelInitrd, BootDir: x86Dir, Cmdline: "console=ttyS0"}
	nodes := &fakeNodes{
		nodes: []Node{
			{Name: "pi3", Serial: "100000000a1b2c3d", MAC: mustMAC("b8:27:eb:1b:2c:3d"), Model: "pi3", Netboot: true, Image: pi,
				ConfigTxt: "enable_uart=1", Cmdline: "systemd.unit=pictl-web.target"},
			{Name: "pi3ip", MAC: mustMAC("b8:27:eb:00:00:13"), Model: "pi3", Netboot: true, Image: pi},
			{Name: "pi4", Serial: "d2e4f6a8", MAC: mustMAC("dc:a6:32:01:36:c2"), Model: "pi4", Netboot: true, Image: pi},
			{Name: "vm1", MAC: mustMAC("52:54:00:12:34:56"), Model: "x86", Netboot: true, Image: x86},
			{Name: "off", Serial: "0ff0ff00", Model: "pi4", Netboot: false, Image: pi},
		},
		ips: map[netip.Addr]string{
			netip.MustParseAddr("127.0.0.3"):  "pi3",
			netip.MustParseAddr("127.0.0.13"): "pi3ip",
			netip.MustParseAddr("127.0.0.4"):  "pi4",
			netip.MustParseAddr("127.0.0.1"):  "vm1",
			netip.MustParseAddr("127.0.0.6"):  "off",
		},
	}
	cfg := Config{Addr: "127.0.0.1:0"}
	if tweak != nil {
		tweak(&cfg)
	}
	h := &harness{t: t, nodes: nodes, rec: &fakeRecorder{}, piDir: piDir, piFiles: piFiles, x86Files: x86Files, logs: &lockedBuffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, nodes, h.rec, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	h.srv, h.addr = srv, srv.Addr().(*net.UDPAddr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs.String())
		}
	})
	return h
}

func (h *harness) client(localIP string) *rawClient {
	h.t.Helper()
	c, err := newRawClient(localIP, h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// count reads the requests_total counter for an outcome.
func (h *harness) count(o Outcome) int {
	var m dto.Metric
	if err := h.srv.m.transfers.WithLabelValues(string(o)).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}

func (h *harness) sentBytes() int64 { return int64(counterValue(h.t, h.srv.m.sentBytes)) }

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// settle waits until no transfer is active: the server finishes its
// accounting after the client has its last packet.
func (h *harness) settle() {
	h.t.Helper()
	for range 500 {
		var m dto.Metric
		_ = h.srv.m.active.Write(&m)
		if m.GetGauge().GetValue() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatal("transfers still active")
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
