package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// responder is a minimal lock-step TFTP server on loopback for the tests
// and benchmarks of the client: RRQ with tsize/blksize options, one
// transfer socket (TID) per request, DATA retransmitted after its own rto
// or on a duplicate ACK. It allocates nothing per block, so a benchmark's
// allocations are the client's.
type responder struct {
	ln    *net.UDPConn
	files map[string][]byte
	rto   time.Duration
	// drop, when set, is asked before each DATA send (attempt counts
	// from 0): true loses the packet.
	drop func(block uint16, attempt int) bool
	// delay, when set, is waited before each first send of a DATA block.
	delay time.Duration
	// silentAfter, when > 0, stops answering after that many DATA
	// blocks: the server is gone.
	silentAfter int
	wg          sync.WaitGroup
}

func newResponder(tb testing.TB, files map[string][]byte) *responder {
	tb.Helper()
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	r := &responder{ln: ln, files: files, rto: time.Second}
	r.wg.Add(1)
	go r.serve()
	tb.Cleanup(func() {
		ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *responder) addr() *net.UDPAddr { return r.ln.LocalAddr().(*net.UDPAddr) }

func (r *responder) serve() {
	defer r.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := r.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p := buf[:n]
		if n < 4 || binary.BigEndian.Uint16(p) != opRRQ {
			continue
		}
		f := strings.Split(string(p[2:]), "\x00")
		if len(f) < 2 {
			continue
		}
		opts := map[string]string{}
		for i := 2; i+1 < len(f); i += 2 {
			opts[strings.ToLower(f[i])] = f[i+1]
		}
		r.wg.Add(1)
		go r.transfer(f[0], opts, from)
	}
}

func (r *responder) transfer(name string, opts map[string]string, to netip.AddrPort) {
	defer r.wg.Done()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return
	}
	defer conn.Close()
	data, ok := r.files[name]
	if !ok {
		_, _ = conn.WriteToUDPAddrPort(errPacket(1, "File not found"), to)
		return
	}
	buf := make([]byte, 2048)
	// await waits for the ACK of block, resending pkt after rto or on a
	// duplicate ACK; false when the client ended the transfer.
	await := func(block uint16, pkt []byte, dataBlock bool) bool {
	attempts:
		for attempt := 0; attempt < 6; attempt++ {
			if attempt == 0 && dataBlock && r.delay > 0 {
				time.Sleep(r.delay)
			}
			if attempt > 0 || !dataBlock || r.drop == nil || !r.drop(block, attempt) {
				if _, err := conn.WriteToUDPAddrPort(pkt, to); err != nil {
					return false
				}
			}
			for {
				_ = conn.SetReadDeadline(time.Now().Add(r.rto))
				n, _, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					break // timeout: resend
				}
				if n < 4 {
					continue
				}
				switch binary.BigEndian.Uint16(buf) {
				case opERROR:
					return false
				case opACK:
					if binary.BigEndian.Uint16(buf[2:]) == block {
						return true
					}
					if dataBlock && attempt == 0 && r.drop != nil {
						// A duplicate ACK of the previous block: the
						// client's retransmission after our DATA was lost.
						continue attempts
					}
				}
			}
		}
		return false
	}
	blksize := 512
	if len(opts) > 0 {
		oack := binary.BigEndian.AppendUint16(nil, opOACK)
		if _, ok := opts["tsize"]; ok {
			oack = append(append(oack, "tsize\x00"...), strconv.Itoa(len(data))+"\x00"...)
		}
		if v, ok := opts["blksize"]; ok {
			blksize, _ = strconv.Atoi(v)
			oack = append(append(oack, "blksize\x00"...), v+"\x00"...)
		}
		if !await(0, oack, false) {
			return
		}
	}
	pkt := make([]byte, 4+blksize)
	binary.BigEndian.PutUint16(pkt, opDATA)
	for block, off := 1, 0; ; block++ {
		if r.silentAfter > 0 && block > r.silentAfter {
			return
		}
		n := copy(pkt[4:], data[off:])
		binary.BigEndian.PutUint16(pkt[2:], uint16(block))
		if !await(uint16(block), pkt[:4+n], true) {
			return
		}
		off += n
		if n < blksize {
			return
		}
	}
}

func testClient(tb testing.TB, server *net.UDPAddr) *tftpClient {
	listen := func() (*net.UDPConn, error) {
		return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	}
	return &tftpClient{listen: listen, server: server, rto: time.Second, retries: 5, buf: make([]byte, 2048)}
}

func testFile(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestTFTPGet(t *testing.T) {
	small := []byte("console=tty1 root=/dev/nfs nfsroot=10.77.0.1:/nodes/pi001\n")
	files := map[string][]byte{
		"cmdline.txt": small,
		"exact":       testFile(4 * 512), // a last block of 0 bytes
		"kernel":      testFile(300_001),
	}
	r := newResponder(t, files)
	tests := []struct {
		name     string
		file     string
		opts     []string
		mode     fetchMode
		keep     bool
		wantSize int64
		wantErr  error
	}{
		{"small kept", "cmdline.txt", nil, fetchFull, true, int64(len(small)), nil},
		{"exact multiple", "exact", nil, fetchFull, false, 4 * 512, nil},
		{"blksize 1024 + tsize", "kernel", []string{"tsize", "0", "blksize", "1024"}, fetchFull, false, 300_001, nil},
		{"Pi 4 probe", "kernel", []string{"tsize", "0", "blksize", "1024"}, probeAfterOACK, false, 300_001, nil},
		{"Pi 3 probe", "kernel", []string{"tsize", "0"}, probeAfterBlock1, false, 300_001, nil},
		{"missing", "nope", nil, fetchFull, false, 0, errNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, r.addr())
			var calls int
			var last int64
			var sawLast bool
			c.onData = func(got int64, final bool) {
				if sawLast {
					t.Errorf("block after the last one")
				}
				calls++
				last, sawLast = got, final
			}
			res, err := c.get(tt.file, tt.opts, tt.mode, tt.keep)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if res.size != tt.wantSize {
				t.Errorf("size %d, want %d", res.size, tt.wantSize)
			}
			if tt.keep && !bytes.Equal(res.data, files[tt.file]) {
				t.Errorf("data %q", res.data)
			}
			if tt.mode == fetchFull && (last != tt.wantSize || !sawLast) {
				t.Errorf("onData last saw %d bytes (%d calls, last %v), want %d", last, calls, sawLast, tt.wantSize)
			}
			if c.retransmits != 0 {
				t.Errorf("%d retransmits on a clean loopback", c.retransmits)
			}
		})
	}
}

// A lost DATA block is recovered by the client's retransmitted ACK after
// rto (not before), and a silent server makes the client give up after
// retries retransmissions, (retries+1)*rto after its last packet.
func TestTFTPRetransmit(t *testing.T) {
	const rto = 50 * time.Millisecond
	file := testFile(20 * 512)
	t.Run("lost DATA", func(t *testing.T) {
		r := newResponder(t, map[string][]byte{"f": file})
		r.rto = time.Hour // only the client's retransmission can recover
		r.drop = func(block uint16, attempt int) bool { return block == 7 && attempt == 0 }
		c := testClient(t, r.addr())
		c.rto = rto
		start := time.Now()
		res, err := c.get("f", nil, fetchFull, false)
		if err != nil || res.size != int64(len(file)) {
			t.Fatalf("get: %v, %d bytes", err, res.size)
		}
		if c.retransmits != 1 {
			t.Errorf("%d retransmits, want 1", c.retransmits)
		}
		if d := time.Since(start); d < rto || d > rto+time.Second {
			t.Errorf("took %v, want about rto %v", d, rto)
		}
	})
	t.Run("lost ACK", func(t *testing.T) {
		// The server's own retransmission of a DATA the client already
		// has is ACKed again, not counted as data.
		r := newResponder(t, map[string][]byte{"f": file})
		r.rto = rto
		var once sync.Once
		c := testClient(t, r.addr())
		c.rto = time.Hour
		c.onData = func(got int64, _ bool) {
			if got == 5*512 {
				once.Do(func() { time.Sleep(2 * rto) }) // the server resends block 5 meanwhile
			}
		}
		res, err := c.get("f", nil, fetchFull, false)
		if err != nil || res.size != int64(len(file)) {
			t.Fatalf("get: %v, %d bytes", err, res.size)
		}
	})
	t.Run("slow server within rto", func(t *testing.T) {
		// Each answer takes under rto, the transfer many rto: no
		// retransmission (the read deadline is not moved per packet).
		r := newResponder(t, map[string][]byte{"f": file})
		r.delay = rto / 3
		c := testClient(t, r.addr())
		c.rto = rto
		res, err := c.get("f", nil, fetchFull, false)
		if err != nil || res.size != int64(len(file)) {
			t.Fatalf("get: %v, %d bytes", err, res.size)
		}
		if c.retransmits != 0 {
			t.Errorf("%d retransmits, want 0", c.retransmits)
		}
	})
	t.Run("silent server", func(t *testing.T) {
		r := newResponder(t, map[string][]byte{"f": file})
		r.silentAfter = 3
		c := testClient(t, r.addr())
		c.rto, c.retries = rto, 3
		start := time.Now()
		_, err := c.get("f", nil, fetchFull, false)
		if err == nil || !strings.Contains(err.Error(), "timeout after 3 retransmissions (block 4)") {
			t.Fatalf("err %v", err)
		}
		if c.retransmits != 3 {
			t.Errorf("%d retransmits, want 3", c.retransmits)
		}
		if d, want := time.Since(start), 4*rto; d < want || d > want+time.Second {
			t.Errorf("gave up after %v, want %v", d, want)
		}
	})
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTFTPGet: one op is one 4 MB download in 512-byte blocks (the
// Pi 3's) from the in-process responder; clients downloads run at once.
// ns/block is wall time, cpu-ns/block the process's CPU (client and
// responder), allocs/block the heap allocations (the responder makes
// none per block). paced runs each client at 4.9 MB/s, the Pi 3's rate.
func BenchmarkTFTPGet(b *testing.B) {
	const size = 4 << 20
	const blocks = size/512 + 1
	for _, bc := range []struct {
		name    string
		clients int
		rate    float64
	}{
		{"unpaced/clients=1", 1, 0},
		{"unpaced/clients=8", 8, 0},
		{"paced/clients=4", 4, 4.9e6},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newResponder(b, map[string][]byte{"f": testFile(size)})
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				for range bc.clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c := testClient(b, r.addr())
						if bc.rate > 0 {
							c.onData = benchPace(context.Background(), bc.rate)
						}
						res, err := c.get("f", nil, fetchFull, false)
						if err != nil || res.size != size {
							b.Errorf("get: %v, %d bytes", err, res.size)
						}
					}()
				}
				wg.Wait()
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			runtime.ReadMemStats(&ms1)
			n := float64(b.N * bc.clients * blocks)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/block")
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/block")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/block")
		})
	}
}

// benchPace is tftpBoot's pacing callback for one file at rate bytes/s.
func benchPace(ctx context.Context, rate float64) func(int64, bool) {
	gate := &rateGate{start: time.Now(), rate: rate}
	return func(got int64, last bool) { _ = gate.wait(ctx, got, last) }
}

// The gate skips waits under paceSlack except on the last block, and a
// paced download keeps its rate: it ends no earlier than size/rate and
// is never more than paceSlack ahead of it.
func TestRateGate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		ahead    time.Duration
		last     bool
		wantWait bool
	}{
		{"behind", -time.Millisecond, false, false},
		// Time passes between setting up the gate and the wait, which
		// only makes the Pi less far ahead: the margins leave room for a
		// slow machine.
		{"slightly ahead", paceSlack * 9 / 10, false, false},
		{"slightly ahead, last block", paceSlack * 9 / 10, true, true},
		{"well ahead", 3 * paceSlack, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 1e9 B/s: byte n is due n ns after start.
			g := &rateGate{start: time.Now().Add(-time.Second), rate: 1e9}
			got := int64(time.Second + tt.ahead)
			if err := g.wait(ctx, got, tt.last); err != nil {
				t.Fatal(err)
			}
			if waited := g.timer != nil; waited != tt.wantWait {
				t.Errorf("waited %v, want %v", waited, tt.wantWait)
			}
			if tt.wantWait && time.Now().Before(g.due(got)) {
				t.Errorf("returned %v before due", time.Until(g.due(got)))
			}
		})
	}

	const size, rate = 300_000, 3e6 // 100 ms
	r := newResponder(t, map[string][]byte{"f": testFile(size)})
	c := testClient(t, r.addr())
	g := &rateGate{start: time.Now(), rate: rate}
	var worst time.Duration
	c.onData = func(got int64, last bool) {
		_ = g.wait(ctx, got, last)
		worst = max(worst, time.Until(g.due(got)))
	}
	if _, err := c.get("f", nil, fetchFull, false); err != nil {
		t.Fatal(err)
	}
	took, want := time.Since(g.start), time.Duration(size/rate*1e9)
	if took < want || took > want+time.Second { // the upper bound only catches waits far too long
		t.Errorf("paced download took %v, want %v", took, want)
	}
	if worst >= paceSlack {
		t.Errorf("ran %v ahead of the rate, slack is %v", worst, paceSlack)
	}
}
