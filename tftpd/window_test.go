package tftpd

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/bpf"
)

// Windowed sending end to end: the steering program in the kernel sends a
// configured client's requests to the windowed server and everyone else's
// to the lock-step one; an iPXE node's address is learned from its first
// request. curl and tftp-hpa are the real clients that must take the
// window; sizes around the window's edges (empty, one block, exactly a
// window, a window ± 1 byte) are where a windowed sender ends wrong.
func TestWindowedClients(t *testing.T) {
	curl := needTool(t, "curl")
	h := newHarness(t, func(c *Config) { c.WindowClients = []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")} })
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := map[string]int{"w0.bin": 0, "w1.bin": 1, "wblk.bin": 1468, "wwin.bin": 8 * 1468, "wwin-1.bin": 8*1468 - 1,
		"wwin+1.bin": 8*1468 + 1, "w512win.bin": 8 * 512, "wbig.bin": 3<<20 + 77}
	files := map[string][]byte{}
	for name, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		files[name] = b
		writeFile(t, filepath.Join(h.piDir, name), b)
	}
	out := filepath.Join(t.TempDir(), "out")
	get := func(ip, blksize, name string) {
		t.Helper()
		msg, err := run(t, curl, "-sS", "--interface", ip, "--tftp-blksize", blksize, "-o", out,
			fmt.Sprintf("tftp://127.0.0.1:%d/%s", h.addr.Port, name))
		got, _ := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, files[name]) {
			t.Fatalf("curl from %s blksize %s %s: %v %s (%d bytes, want %d)", ip, blksize, name, err, msg, len(got), len(files[name]))
		}
	}
	windowed := func() int { h.settle(); return int(counterValue(t, h.srv.m.windowed)) }

	// 127.0.0.4 (pi4, but configured): every request windowed.
	n := 0
	for _, blk := range []string{"512", "1468"} {
		for name := range files {
			get("127.0.0.4", blk, name)
			n++
		}
	}
	if got := windowed(); got != n {
		t.Errorf("configured client: %d of %d requests windowed", got, n)
	}
	// 127.0.0.3 (pi3, not configured): lock-step.
	get("127.0.0.3", "1468", "wbig.bin")
	if got := windowed(); got != n {
		t.Errorf("Pi client: windowed requests %d → %d, want lock-step", n, got)
	}
	// 127.0.0.1 (vm1, an iPXE node): its first request teaches the address.
	tftpBin := needTool(t, "tftp")
	dir := t.TempDir()
	for i, file := range []string{"boot.ipxe", "vmlinuz", "initrd.img"} {
		local := filepath.Join(dir, file)
		msg, err := run(t, tftpBin, "-m", "binary", "127.0.0.1", fmt.Sprint(h.addr.Port), "-c", "get", file, local)
		if err != nil {
			t.Fatalf("tftp get %s: %v %s", file, err, msg)
		}
		if file != "boot.ipxe" {
			if got, _ := os.ReadFile(local); !bytes.Equal(got, h.x86Files[file]) {
				t.Fatalf("tftp-hpa %s: %d bytes, want %d", file, len(got), len(h.x86Files[file]))
			}
		}
		if got := windowed(); got != n+i {
			t.Errorf("iPXE node request %d (%s): windowed total %d, want %d", i, file, got, n+i)
		}
	}
	for _, o := range []Outcome{OutcomeTimeout, OutcomeClientAbort, OutcomeError} {
		if c := h.count(o); c != 0 {
			t.Errorf("%s = %d, want 0", o, c)
		}
	}
}

// The learned set: new addresses rebuild the program, refreshes do not,
// expired and forgotten addresses leave it, the configured prefixes are
// never learned, and the set stays within what one program can hold.
func TestWindowClientsSet(t *testing.T) {
	w, err := newWindowClients([]netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	var attached int
	var last []bpf.RawInstruction
	w.attach = func(p []bpf.RawInstruction) error { attached++; last = p; return nil }
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	a, b := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.6")
	steps := []struct {
		name     string
		do       func() error
		attached int
		learned  int
	}{
		{"new address", func() error { return w.learn(a, t0) }, 1, 1},
		{"refresh", func() error { return w.learn(a, t0.Add(time.Minute)) }, 1, 1},
		{"configured prefix", func() error { return w.learn(netip.MustParseAddr("10.9.3.4"), t0) }, 1, 1},
		{"IPv6 ignored", func() error { return w.learn(netip.MustParseAddr("fe80::1"), t0) }, 1, 1},
		{"second address", func() error { return w.learn(b, t0.Add(2*time.Minute)) }, 2, 2},
		{"a expires", func() error { return w.learn(b, t0.Add(windowTTL+2*time.Minute)) }, 3, 1},
		{"forget b", func() error { return w.forget(b) }, 4, 0},
		{"forget unknown", func() error { return w.forget(a) }, 4, 0},
		{"demote", func() error { return w.demote(a, t0) }, 5, 0},
		{"demoted is not learned", func() error { return w.learn(a, t0.Add(time.Minute)) }, 5, 0},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if attached != s.attached || len(w.learned) != s.learned {
			t.Fatalf("%s: attached %d learned %d, want %d %d", s.name, attached, len(w.learned), s.attached, s.learned)
		}
	}
	if len(last) != 3+4+1 { // the demoted block, the prefix block and ret 0
		t.Errorf("program with no learned address: %d instructions", len(last))
	}
	for i := range maxLearned + 5 {
		if err := w.learn(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.learned)+len(w.demoted) != maxLearned {
		t.Errorf("learned %d, want capped at %d", len(w.learned), maxLearned)
	}
	if _, ok := w.learned[netip.AddrFrom4([4]byte{10, 2, 0, 0})]; ok {
		t.Error("oldest address kept past the cap")
	}
	prefixes := make([]netip.Prefix, MaxWindowClients)
	for i := range prefixes {
		prefixes[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i), 0}), 24)
	}
	addrs := make([]netip.Addr, maxLearned)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)})
	}
	prog, err := steeringProgram(nil, prefixes, addrs)
	if err != nil || len(prog) > 4096 {
		t.Errorf("largest program: %d instructions, %v (BPF_MAXINSNS 4096)", len(prog), err)
	}
	if _, err := newWindowClients(append(prefixes, prefixes[0])); err == nil {
		t.Error("too many prefixes accepted")
	}
}

// A lost ACK inside a window fails the library's windowed transfer (see
// window.go); the server must then send that client lock-step, so the
// client's retry succeeds on the same link. A relay between curl and the
// server drops the 20th ACK of every transfer (this kernel has no netem).
func TestWindowedFailureDemotesToLockStep(t *testing.T) {
	curl := needTool(t, "curl")
	h := newHarness(t, func(c *Config) {
		c.Timeout = 100 * time.Millisecond
		c.WindowClients = []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}
	})
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	writeFile(t, filepath.Join(h.piDir, "lossy.bin"), data)
	relay := newACKDropRelay(t, "127.0.0.4", h.addr, 20)
	out := filepath.Join(t.TempDir(), "out")
	fetch := func() error {
		os.Remove(out)
		msg, err := run(t, curl, "-sS", "--tftp-blksize", "1468", "-o", out, "tftp://"+relay.String()+"/lossy.bin")
		if err != nil {
			return fmt.Errorf("%v: %s", err, msg)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
			return fmt.Errorf("%d bytes, want %d", len(got), len(data))
		}
		return nil
	}
	if err := fetch(); err == nil {
		t.Error("windowed transfer survived a lost ACK: the library recovers now; revisit window.go's Losses")
	}
	if err := fetch(); err != nil {
		t.Fatalf("retry after the failed windowed attempt: %v", err)
	}
	h.settle()
	if !strings.Contains(h.logs.String(), "moved to lock-step") || counterValue(t, h.srv.m.windowed) != 1 {
		t.Errorf("windowed requests %v; want the first only, then the client demoted", counterValue(t, h.srv.m.windowed))
	}
}

// newACKDropRelay forwards TFTP between clients and server, sending to the
// server from local (so the server sees that client address), and drops
// the nth ACK of each transfer. One transfer at a time.
func newACKDropRelay(t *testing.T, local string, server *net.UDPAddr, nth int) net.Addr {
	t.Helper()
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.20")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { front.Close() })
	go func() {
		buf := make([]byte, 70000)
		for {
			n, client, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			back, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(local)})
			if err != nil {
				return
			}
			// The client's side of the transfer: a new TID, as a server's.
			side, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.20")})
			if err != nil {
				back.Close()
				return
			}
			back.WriteToUDP(buf[:n], server)
			var peer atomic.Pointer[net.UDPAddr]
			go func() { // server → client
				b := make([]byte, 70000)
				for {
					back.SetReadDeadline(time.Now().Add(3 * time.Second))
					n, from, err := back.ReadFromUDP(b)
					if err != nil {
						back.Close()
						side.Close()
						return
					}
					peer.Store(from)
					side.WriteToUDP(b[:n], client)
				}
			}()
			acks := 0
			b := make([]byte, 70000)
			for { // client → server
				side.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, _, err := side.ReadFromUDP(b)
				if err != nil {
					break
				}
				if n == 4 && b[1] == 4 {
					if acks++; acks == nth {
						continue
					}
				}
				if p := peer.Load(); p != nil {
					back.WriteToUDP(b[:n], p)
				}
			}
		}
	}()
	return front.LocalAddr()
}
