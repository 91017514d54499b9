// Package connlimit bounds the TCP connections a server keeps open: in
// total and per client address, with a short deadline for connections that
// have not yet shown they belong to a real client. A server on the boot
// network cannot choose its clients, so without bounds anyone there can
// exhaust its descriptors by opening connections and sending nothing.
//
// When a new connection would exceed a bound, the listener closes the
// least useful open one (never-proven first, then the longest idle) rather
// than refusing the newcomer: an attacker's stale connections go before a
// client that is talking now, and an attacker from one address only
// evicts its own.
package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Reasons passed to Config.OnClose, also the label values servers export.
const (
	ReasonPerClient   = "per_client_limit" // the client address had MaxPerClient open
	ReasonTotal       = "total_limit"      // MaxConns were open
	ReasonUnproven    = "unproven_timeout" // not proven within UnprovenTimeout
	ReasonAcceptError = "accept_error"     // accept failed (out of descriptors...), retried
)

// Config sets the bounds. Zero values mean the defaults.
type Config struct {
	// MaxConns bounds the open connections. Default 1024.
	MaxConns int
	// MaxPerClient bounds the open connections of one client address.
	// Default 64.
	MaxPerClient int
	// UnprovenTimeout closes a connection that was not Proven this long
	// after it was accepted. Default 10 s. Negative: never.
	UnprovenTimeout time.Duration
	// OnClose, if set, is called once for every connection the listener
	// closes itself or every accept error it retries, with the reason.
	OnClose func(reason string)
}

// Defaults.
const (
	DefaultMaxConns        = 1024
	DefaultMaxPerClient    = 64
	DefaultUnprovenTimeout = 10 * time.Second
)

func (c Config) maxConns() int {
	if c.MaxConns <= 0 {
		return DefaultMaxConns
	}
	return c.MaxConns
}

func (c Config) maxPerClient() int {
	if c.MaxPerClient <= 0 {
		return DefaultMaxPerClient
	}
	return c.MaxPerClient
}

func (c Config) unprovenTimeout() time.Duration {
	if c.UnprovenTimeout == 0 {
		return DefaultUnprovenTimeout
	}
	return c.UnprovenTimeout
}

// Listener wraps a net.Listener with the bounds. Its Accept never fails for
// want of descriptors or memory: it waits and tries again (as net/http
// does), so a flood cannot end the server's accept loop.
type Listener struct {
	net.Listener
	cfg Config

	mu    sync.Mutex
	conns map[*Conn]struct{}
	perIP map[netip.Addr]int
}

// Listen wraps ln.
func Listen(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, conns: map[*Conn]struct{}{}, perIP: map[netip.Addr]int{}}
}

// Accept returns the next connection, after closing older ones if the new
// one exceeds a bound.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err == nil {
			return l.admit(nc), nil
		}
		if !retryable(err) {
			return nil, err
		}
		l.note(ReasonAcceptError)
		// Out of descriptors: give one back by closing the worst
		// connection, then wait a little for others to go.
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			if v := l.victim(func(*Conn) bool { return true }); v != nil {
				v.closeFor(ReasonTotal)
			}
		}
		if delay == 0 {
			delay = 5 * time.Millisecond
		} else if delay *= 2; delay > time.Second {
			delay = time.Second
		}
		time.Sleep(delay)
	}
}

// retryable: errors after which the listening socket still works.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (l *Listener) note(reason string) {
	if l.cfg.OnClose != nil {
		l.cfg.OnClose(reason)
	}
}

func (l *Listener) admit(nc net.Conn) *Conn {
	now := time.Now()
	c := &Conn{Conn: nc, l: l, ip: remoteIP(nc), accepted: now}
	c.lastActive.Store(now.UnixNano())
	var evict []*Conn
	var reasons []string
	l.mu.Lock()
	if l.perIP[c.ip] >= l.cfg.maxPerClient() {
		if v := l.victimLocked(func(o *Conn) bool { return o.ip == c.ip }); v != nil {
			evict, reasons = append(evict, v), append(reasons, ReasonPerClient)
			l.dropLocked(v)
		}
	}
	if len(l.conns) >= l.cfg.maxConns() {
		if v := l.victimLocked(func(*Conn) bool { return true }); v != nil {
			evict, reasons = append(evict, v), append(reasons, ReasonTotal)
			l.dropLocked(v)
		}
	}
	l.conns[c] = struct{}{}
	l.perIP[c.ip]++
	l.mu.Unlock()
	for i, v := range evict {
		v.closeFor(reasons[i])
	}
	if d := l.cfg.unprovenTimeout(); d > 0 {
		c.timer.Store(time.AfterFunc(d, func() {
			if !c.proven.Load() {
				c.closeFor(ReasonUnproven)
			}
		}))
	}
	return c
}

// victim picks the connection to close among those match accepts: one
// never proven (oldest first), else the longest idle that is not busy,
// else the longest idle.
func (l *Listener) victim(match func(*Conn) bool) *Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.victimLocked(match)
}

func (l *Listener) victimLocked(match func(*Conn) bool) *Conn {
	var best *Conn
	rank := func(c *Conn) (int, int64) {
		switch {
		case !c.proven.Load():
			return 0, c.accepted.UnixNano()
		case !c.busy.Load():
			return 1, c.lastActive.Load()
		}
		return 2, c.lastActive.Load()
	}
	var br int
	var bt int64
	for c := range l.conns {
		if !match(c) {
			continue
		}
		r, t := rank(c)
		if best == nil || r < br || r == br && t < bt {
			best, br, bt = c, r, t
		}
	}
	return best
}

func (l *Listener) dropLocked(c *Conn) bool {
	if _, ok := l.conns[c]; !ok {
		return false
	}
	delete(l.conns, c)
	if l.perIP[c.ip]--; l.perIP[c.ip] <= 0 {
		delete(l.perIP, c.ip)
	}
	return true
}

// Open is the number of open connections; Client the number from addr.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Client is the number of open connections from addr.
func (l *Listener) Client(addr netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[addr.Unmap()]
}

// CloseAll closes every open connection (on shutdown).
func (l *Listener) CloseAll() {
	l.mu.Lock()
	list := make([]*Conn, 0, len(l.conns))
	for c := range l.conns {
		list = append(list, c)
	}
	l.mu.Unlock()
	for _, c := range list {
		c.Close()
	}
}

// Conn is an accepted connection. Servers call Prove once the peer has
// shown it is a real client (a valid RPC, an authenticated request), Touch
// when it does something, and SetBusy around work in progress.
type Conn struct {
	net.Conn
	l          *Listener
	ip         netip.Addr
	accepted   time.Time
	lastActive atomic.Int64 // unix ns
	proven     atomic.Bool
	busy       atomic.Bool
	timer      atomic.Pointer[time.Timer]
	once       sync.Once
}

// Prove marks the connection as a real client's: the unproven deadline no
// longer applies and it is evicted only after unproven ones.
func (c *Conn) Prove() {
	if !c.proven.Swap(true) {
		if t := c.timer.Load(); t != nil {
			t.Stop()
		}
	}
	c.Touch()
}

// Proven reports whether Prove was called.
func (c *Conn) Proven() bool { return c.proven.Load() }

// Touch records activity (eviction closes the longest idle first).
func (c *Conn) Touch() { c.lastActive.Store(time.Now().UnixNano()) }

// SetBusy marks work in progress (busy connections are evicted last).
func (c *Conn) SetBusy(b bool) {
	c.busy.Store(b)
	c.Touch()
}

// ClientAddr is the peer's address.
func (c *Conn) ClientAddr() netip.Addr { return c.ip }

func (c *Conn) closeFor(reason string) {
	closed := false
	c.once.Do(func() {
		closed = true
		c.release()
	})
	if closed {
		c.l.note(reason)
		_ = c.Conn.Close()
	}
}

func (c *Conn) release() {
	if t := c.timer.Load(); t != nil {
		t.Stop()
	}
	c.l.mu.Lock()
	c.l.dropLocked(c)
	c.l.mu.Unlock()
}

// Close closes the connection and frees its place.
func (c *Conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
