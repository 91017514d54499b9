package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve accepts on a wrapped loopback listener and records every reason.
type harness struct {
	l       *Listener
	mu      sync.Mutex
	reasons []string
	conns   chan *Conn
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{conns: make(chan *Conn, 1000)}
	cfg.OnClose = func(r string) {
		h.mu.Lock()
		h.reasons = append(h.reasons, r)
		h.mu.Unlock()
	}
	h.l = Listen(ln, cfg)
	go func() {
		for {
			c, err := h.l.Accept()
			if err != nil {
				return
			}
			h.conns <- c.(*Conn)
		}
	}()
	t.Cleanup(func() { h.l.Close(); h.l.CloseAll() })
	return h
}

func (h *harness) count(reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.reasons {
		if r == reason {
			n++
		}
	}
	return n
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits until the server side closed c.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestPerClientEvictsOldestUnproven(t *testing.T) {
	h := newHarness(t, Config{MaxPerClient: 3, MaxConns: 100, UnprovenTimeout: -1})
	addr := h.l.Addr().String()
	// A real client from .1, proven.
	real := dialFrom(t, "127.0.0.1", addr)
	(<-h.conns).Prove()
	// Four from .2: the first goes when the fourth arrives.
	var flood []net.Conn
	for i := 0; i < 4; i++ {
		flood = append(flood, dialFrom(t, "127.0.0.2", addr))
		<-h.conns
	}
	if !closedByServer(flood[0]) {
		t.Fatal("oldest connection of the flooding client still open")
	}
	if got := h.count(ReasonPerClient); got != 1 {
		t.Errorf("per-client closes %d, want 1", got)
	}
	if n := h.l.Client(netipMust("127.0.0.2")); n != 3 {
		t.Errorf("client .2 has %d open, want 3", n)
	}
	_ = real.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := real.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
		t.Errorf("the other client's connection was touched: %v", err)
	}
}

func TestTotalEvictsUnprovenBeforeProven(t *testing.T) {
	h := newHarness(t, Config{MaxPerClient: 10, MaxConns: 3, UnprovenTimeout: -1})
	addr := h.l.Addr().String()
	real := dialFrom(t, "127.0.0.1", addr)
	(<-h.conns).Prove()
	a := dialFrom(t, "127.0.0.2", addr)
	<-h.conns
	dialFrom(t, "127.0.0.3", addr)
	<-h.conns
	dialFrom(t, "127.0.0.4", addr) // over the total: a (unproven, oldest) goes
	<-h.conns
	if !closedByServer(a) {
		t.Fatal("oldest unproven connection still open")
	}
	if h.count(ReasonTotal) != 1 || h.l.Open() != 3 {
		t.Errorf("total closes %d, open %d", h.count(ReasonTotal), h.l.Open())
	}
	_ = real.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := real.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("proven connection closed before unproven ones: %v", err)
	}
}

func TestUnprovenTimeout(t *testing.T) {
	h := newHarness(t, Config{UnprovenTimeout: 50 * time.Millisecond})
	addr := h.l.Addr().String()
	idle := dialFrom(t, "127.0.0.1", addr)
	<-h.conns
	proven := dialFrom(t, "127.0.0.1", addr)
	(<-h.conns).Prove()
	if !closedByServer(idle) {
		t.Fatal("unproven connection not closed")
	}
	if h.count(ReasonUnproven) != 1 {
		t.Errorf("unproven closes %d, want 1", h.count(ReasonUnproven))
	}
	_ = proven.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := proven.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("proven connection closed: %v", err)
	}
	if h.l.Open() != 1 {
		t.Errorf("open %d, want 1", h.l.Open())
	}
}

// failingListener fails its first accepts as a process out of descriptors.
type failingListener struct {
	net.Listener
	fails int
}

func (f *failingListener) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

func TestAcceptSurvivesEMFILE(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var errs int
	l := Listen(&failingListener{Listener: ln, fails: 3}, Config{OnClose: func(r string) {
		if r == ReasonAcceptError {
			errs++
		}
	}})
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("accept gave up: %v", err)
	}
	c.Close()
	if errs != 3 {
		t.Errorf("accept errors counted %d, want 3", errs)
	}
	ln.Close()
	if _, err := l.Accept(); err == nil {
		t.Error("accept on a closed listener succeeded")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
