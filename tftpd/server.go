package tftpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/bpf"

	"github.com/pictl/pictl/internal/neigh"
)

// Server is the TFTP server. Create it with New, open its socket with
// Listen (inside the network namespace it should serve), then Serve.
type Server struct {
	cfg    Config
	nodes  Nodes
	rec    Recorder
	log    *slog.Logger
	m      *metrics
	files  bootFiles
	routes []Route
	limit  clientLimiter
	seen   unknownLog

	conn *net.UDPConn
	// wconn is the windowed server's socket, in conn's reuseport group;
	// nil when every client is served lock-step.
	wconn  *net.UDPConn
	window *windowClients
	netns  *os.File
	arp    *neigh.ARPTable

	ctx context.Context // Serve's, for handlers
}

// New checks the configuration and builds a server. rec may be nil (nothing
// recorded), log nil (silent), reg nil (no metrics registered).
func New(cfg Config, nodes Nodes, rec Recorder, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if nodes == nil {
		return nil, errors.New("tftpd: nil Nodes")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cache *contentCache
	if cfg.CacheBytes > 0 {
		cache = newContentCache(cfg.CacheBytes, cfg.CacheMaxFileBytes)
	}
	m, err := newMetrics(reg, cache)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, nodes: nodes, rec: rec, log: log, m: m,
		files: bootFiles{cache: cache},
		limit: clientLimiter{max: cfg.MaxTransfersPerClient, active: map[netip.Addr]int{}},
		seen:  unknownLog{every: 10 * time.Minute, last: map[string]time.Time{}},
		ctx:   context.Background(),
	}
	s.routes = cfg.Routes
	if s.routes == nil {
		s.routes = DefaultRoutes(nodes, serverNeighbors{s})
	}
	return s, nil
}

// Name is the component name the controller shows.
func (s *Server) Name() string { return "tftpd" }

// Listen opens the UDP socket, the kernel neighbour table and remembers the
// calling thread's network namespace (Serve opens per-transfer sockets
// there). Call it at most once.
func (s *Server) Listen() error {
	if s.conn != nil {
		return errors.New("tftpd: already listening")
	}
	addr, err := net.ResolveUDPAddr("udp4", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("tftpd: listen address %q: %w", s.cfg.Addr, err)
	}
	ns, err := currentNetns()
	if err != nil {
		return fmt.Errorf("tftpd: %w", err)
	}
	conn, wconn, err := s.listenSockets(addr)
	if err != nil {
		if ns != nil {
			ns.Close()
		}
		return fmt.Errorf("tftpd: %w", err)
	}
	s.conn, s.wconn, s.netns = conn, wconn, ns
	if arp, err := neigh.OpenARPTable(); err == nil {
		s.arp = arp
	} else {
		s.log.Warn("no neighbour table: clients without a lease or reservation are not recognised by MAC", "err", err)
	}
	return nil
}

// listenSockets opens the lock-step socket and, when windowed sending is
// on, the windowed one in the same reuseport group, steering program
// attached before the second socket joins (until then every request must
// reach the lock-step server).
func (s *Server) listenSockets(addr *net.UDPAddr) (conn, wconn *net.UDPConn, err error) {
	if s.cfg.Window < 2 || !canSteer {
		conn, err = net.ListenUDP("udp4", addr)
		if err == nil {
			// Room for a boot storm's burst of requests while the request
			// loop is busy opening transfer sockets.
			_ = conn.SetReadBuffer(1 << 20)
		}
		return conn, nil, err
	}
	window, err := newWindowClients(s.cfg.WindowClients)
	if err != nil {
		return nil, nil, err
	}
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
	if err != nil {
		return nil, nil, err
	}
	conn = pc.(*net.UDPConn)
	window.attach = func(prog []bpf.RawInstruction) error { return attachSteering(conn, prog) }
	window.mu.Lock()
	err = window.attachLocked()
	window.mu.Unlock()
	if err == nil {
		// The same port, also when addr asked for any.
		pc, err = lc.ListenPacket(context.Background(), "udp4", conn.LocalAddr().String())
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	wconn = pc.(*net.UDPConn)
	for _, c := range []*net.UDPConn{conn, wconn} {
		_ = c.SetReadBuffer(1 << 20)
	}
	s.window = window
	return conn, wconn, nil
}

// Addr is the listening address (after Listen).
func (s *Server) Addr() net.Addr {
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// Run listens unless Listen was called, then serves until ctx ends: the
// controller's component interface.
func (s *Server) Run(ctx context.Context) error {
	if s.conn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	return s.Serve(ctx)
}

// Serve answers requests until ctx is cancelled, then stops accepting,
// waits for transfers in progress to end (each is bounded by Timeout ×
// Retries of silence) and closes the socket.
func (s *Server) Serve(ctx context.Context) error {
	if s.conn == nil {
		return errors.New("tftpd: Serve before Listen")
	}
	defer s.closeAll()
	s.ctx = ctx

	type served struct {
		srv  *tftp.Server
		conn *net.UDPConn
	}
	servers := []served{{s.newPinServer(false), s.conn}}
	if s.wconn != nil {
		servers = append(servers, served{s.newPinServer(true), s.wconn})
	}
	done := make(chan error, len(servers))
	for _, sv := range servers {
		go func() { done <- runInNetns(s.netns, func() error { return sv.srv.Serve(sv.conn) }) }()
	}
	window := 1
	if s.wconn != nil {
		window = s.cfg.Window
	}
	s.log.Info("tftp serving", "addr", s.conn.LocalAddr().String(), "max_blksize", s.cfg.MaxBlockSize,
		"window", window, "window_clients", len(s.cfg.WindowClients))

	var err error
	select {
	case err = <-done:
		err = fmt.Errorf("tftpd: %w", err)
	case <-ctx.Done():
	}
	for _, sv := range servers {
		sv.srv.Shutdown()
	}
	return err
}

// newPinServer is one of the two library servers: lock-step, or windowed.
func (s *Server) newPinServer(windowed bool) *tftp.Server {
	read := s.handleRead
	if windowed {
		read = s.handleWindowedRead
	}
	srv := tftp.NewServer(read, s.handleWrite)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetBlockSize(s.cfg.MaxBlockSize)
	// The timeout already waited; sleeping a random extra second on top
	// (the library's default backoff) only stalls the client.
	srv.SetBackoff(func(int) time.Duration { return 0 })
	srv.SetHook(loopHook{s})
	if windowed {
		srv.SetAnticipate(uint(s.cfg.Window))
	}
	return srv
}

func (s *Server) closeAll() {
	for _, c := range []*net.UDPConn{s.conn, s.wconn} {
		if c != nil {
			c.Close()
		}
	}
	if s.netns != nil {
		s.netns.Close()
	}
	if s.arp != nil {
		s.arp.Close()
	}
}

// serverNeighbors defers to the ARP table Listen opens, so routes can be
// built before Listen.
type serverNeighbors struct{ s *Server }

func (n serverNeighbors) MACOf(ip netip.Addr) (net.HardwareAddr, bool) {
	if n.s.arp == nil {
		return nil, false
	}
	return n.s.arp.MACOf(ip)
}

// loopHook receives the library's reports. Per-transfer reports are ignored
// (handleRead accounts for transfers itself, with byte counts and outcome
// classes the hook lacks); a failure without a remote address comes from
// the request loop: a packet that started no transfer.
type loopHook struct{ s *Server }

func (h loopHook) OnSuccess(tftp.TransferStats) {}

func (h loopHook) OnFailure(st tftp.TransferStats, err error) {
	if st.RemoteAddr != nil {
		return
	}
	h.s.m.badPackets.Inc()
	h.s.log.Debug("tftp packet dropped", "err", err)
}

// clientLimiter counts transfers per client address.
type clientLimiter struct {
	max    int
	mu     sync.Mutex
	active map[netip.Addr]int
}

func (l *clientLimiter) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[ip] >= l.max {
		return false
	}
	l.active[ip]++
	return true
}

func (l *clientLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[ip]--; l.active[ip] <= 0 {
		delete(l.active, ip)
	}
}

// unknownLog rate-limits the Info line about an unknown client.
type unknownLog struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

func (u *unknownLog) first(key string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.last[key]; ok && now.Sub(t) < u.every {
		return false
	}
	if len(u.last) > 4096 {
		clear(u.last)
	}
	u.last[key] = now
	return true
}
