package hardening

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/test/internal/nfs3client"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/bbolt"
)

// oneNode serves one node, "n1", whose address is the real client's.
type oneNode struct {
	root string
	addr netip.Addr
}

func (o oneNode) ByAddr(a netip.Addr) (nfsd.Node, bool) {
	if a == o.addr {
		return nfsd.Node{Name: "n1", ImageRoot: o.root}, true
	}
	return nfsd.Node{}, false
}

func (o oneNode) ByName(n string) (nfsd.Node, bool) {
	if n == "n1" {
		return nfsd.Node{Name: "n1", ImageRoot: o.root}, true
	}
	return nfsd.Node{}, false
}

func (o oneNode) Volume(string) (nfsd.Volume, bool) { return nfsd.Volume{}, false }

type nfsEnv struct {
	addr string
	reg  *prometheus.Registry
	errc chan error
}

func startNFS(t *testing.T, cfg nfsd.Config) *nfsEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nfsd needs root (it keeps file ownership)")
	}
	raiseNOFILE(t)
	state := t.TempDir()
	root := filepath.Join(state, "image")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(filepath.Join(state, "runtime.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg.Addr, cfg.StateDir = "127.0.0.1:0", state
	reg := prometheus.NewRegistry()
	nodes := oneNode{root: root, addr: netip.MustParseAddr("127.0.0.1")}
	srv, err := nfsd.New(cfg, nodes, nodes, db, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &nfsEnv{addr: srv.Addr().String(), reg: reg, errc: make(chan error, 1)}
	go func() { e.errc <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-e.errc; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return e
}

// alive fails the test if Serve has returned.
func (e *nfsEnv) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-e.errc:
		e.errc <- err
		t.Fatalf("nfs server stopped: %v", err)
	default:
	}
}

// realClient mounts n1 from 127.0.0.1 and reads /etc/hostname.
func (e *nfsEnv) realClient(t *testing.T) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 5 * time.Second}
	c, err := nfs3client.MountDial(d.Dial, e.addr, e.addr, "/nodes/n1")
	if err != nil {
		t.Fatalf("real client: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	etc, _, err := c.Lookup(c.Root, "etc")
	if err != nil {
		t.Fatalf("real client: lookup etc: %v", err)
	}
	fh, attr, err := c.Lookup(etc, "hostname")
	if err != nil || attr.Size != 3 {
		t.Fatalf("real client: lookup hostname: %v (size %d)", err, attr.Size)
	}
	if n, _, err := c.Read(fh, 0, 100); err != nil || n != 3 {
		t.Fatalf("real client: read: %d bytes, %v", n, err)
	}
}

func (e *nfsEnv) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m, labels) {
				switch {
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Counter != nil:
					return m.Counter.GetValue()
				}
			}
		}
	}
	return 0
}

func matchLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		ok := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func raiseNOFILE(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// Issue 18 row 2: thousands of idle connections (no MOUNT, no RPC) from
// three addresses. The server holds at most MaxConnsPerClient of each,
// closes the unproven ones within seconds, and keeps serving a real client.
func TestNFSIdleConnectionFlood(t *testing.T) {
	const perClient = 32
	e := startNFS(t, nfsd.Config{MaxConnsPerClient: perClient, UnprovenTimeout: 2 * time.Second})
	e.realClient(t)
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	const total = 6000
	for i := 0; i < total; i++ {
		src := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}[i%3]
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", e.addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				continue
			}
			t.Fatalf("dial %d: %v", i, err)
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		if i%1000 == 999 {
			e.alive(t)
			e.realClient(t) // during
			if open := e.metric(t, "pictl_nfsd_connections"); open > 3*perClient+2 {
				t.Fatalf("%d connections open on the server, want at most %d", int(open), 3*perClient+2)
			}
		}
	}
	if got := e.metric(t, "pictl_nfsd_connections_refused_total", "reason", "per_client_limit"); got < total-3*perClient-10 {
		t.Errorf("per-client refusals %v, want about %d", got, total-3*perClient)
	}
	// The survivors never send anything: gone after the unproven timeout.
	deadline := time.Now().Add(30 * time.Second)
	for e.metric(t, "pictl_nfsd_connections") > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if open := e.metric(t, "pictl_nfsd_connections"); open != 0 {
		t.Errorf("%v idle connections still open", open)
	}
	if e.metric(t, "pictl_nfsd_connections_refused_total", "reason", "unproven_timeout") == 0 {
		t.Error("no unproven timeouts counted")
	}
	e.alive(t)
	e.realClient(t) // after
}

// Issue 18 row 3: 100 connections each send a valid NULL call (so they
// count as proven) and then 15 MiB of a record that never ends. The
// records' memory stays within RecordMemory, the connections that do not
// fit are closed and counted, the budget is all given back once they close,
// and a real client is served throughout.
func TestNFSPartialRecordMemory(t *testing.T) {
	const budget = 32 << 20
	e := startNFS(t, nfsd.Config{RecordMemory: budget, UnprovenTimeout: time.Minute})
	rss0 := rssBytes(t)
	chunk := make([]byte, 256<<10)
	var wg sync.WaitGroup
	var conns []net.Conn
	var cmu sync.Mutex
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0." + []string{"2", "3", "4"}[i%3])}}
			c, err := d.Dial("tcp", e.addr)
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c)
			cmu.Unlock()
			if _, err := c.Write(nullCall(uint32(i))); err != nil {
				return
			}
			// A fragment announced as 15 MiB + 1 KiB, sent 15 MiB of.
			if _, err := c.Write(binary.BigEndian.AppendUint32(nil, (15<<20+1<<10)|0x80000000)); err != nil {
				return
			}
			for sent := 0; sent < 15<<20; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return // closed by the server: over the budget
				}
			}
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var peak float64
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(200 * time.Millisecond):
		}
		e.alive(t)
		if b := e.metric(t, "pictl_nfsd_record_bytes"); b > peak {
			peak = b
		}
	}
	e.realClient(t) // during: the attackers still hold their records
	if peak > budget {
		t.Errorf("record bytes peaked at %v, over the %d budget", peak, budget)
	}
	if got := e.metric(t, "pictl_nfsd_connections_refused_total", "reason", "record_memory"); got < 90 {
		t.Errorf("record_memory refusals %v, want most of the 100", got)
	}
	grew := rssBytes(t) - rss0
	t.Logf("record bytes peak %.1f MiB, RSS growth %.1f MiB", peak/(1<<20), float64(grew)/(1<<20))
	if grew > 200<<20 {
		t.Errorf("RSS grew by %d MiB", grew>>20)
	}
	cmu.Lock()
	for _, c := range conns {
		c.Close()
	}
	cmu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for e.metric(t, "pictl_nfsd_record_bytes") != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if b := e.metric(t, "pictl_nfsd_record_bytes"); b != 0 {
		t.Errorf("%v record bytes still charged after every attacker closed", b)
	}
	e.alive(t)
	e.realClient(t) // after
}

// nullCall is an NFSv3 NULL call with AUTH_NONE, as one last fragment.
func nullCall(xid uint32) []byte {
	var b []byte
	for _, w := range []uint32{xid, 0, 2, 100003, 3, 0, 0, 0, 0, 0} {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))|0x80000000), b...)
}

func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb int64
			for _, ch := range f[1] {
				kb = kb*10 + int64(ch-'0')
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// A record started and never finished (a slow-loris of fragments) holds
// its memory only until RecordTimeout: the connection is then closed and
// counted, even though it had proven itself with a valid call.
func TestNFSSlowRecordTimeout(t *testing.T) {
	e := startNFS(t, nfsd.Config{RecordTimeout: time.Second, UnprovenTimeout: time.Minute})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(nullCall(1))
	c.Write(binary.BigEndian.AppendUint32(nil, (1<<20)|0x80000000))
	c.Write(make([]byte, 100<<10))
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection with an unfinished record still open")
			}
			break
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.metric(t, "pictl_nfsd_connections_refused_total", "reason", "record_timeout") != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.metric(t, "pictl_nfsd_connections_refused_total", "reason", "record_timeout"); got != 1 {
		t.Errorf("record_timeout %v, want 1", got)
	}
	if b := e.metric(t, "pictl_nfsd_record_bytes"); b != 0 {
		t.Errorf("%v record bytes still charged", b)
	}
	e.realClient(t)
}
