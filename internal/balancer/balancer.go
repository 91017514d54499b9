// Package balancer is pictl's built-in reverse proxy in front of the web
// nodes: an HTTP/1.1 proxy written for low CPU per request (a strict
// parser, pooled keep-alive member connections, splice for large bodies)
// or an L4 TCP splice proxy, with health checks, passive ejection,
// retries of idempotent requests and graceful drain.
package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Modes (Config.Mode).
const (
	ModeHTTP = "http"
	ModeTCP  = "tcp"
)

// HealthCheck configures active checks; a zero Interval disables them and
// members are taken as up once the membership says they are ready.
type HealthCheck struct {
	// Kind is CheckHTTP (a GET of Path expecting Status, default) or
	// CheckTCP (a connection that opens).
	Kind     string
	Interval time.Duration
	Path     string        // default "/"
	Status   int           // expected status, default 200
	Timeout  time.Duration // default 2s
	Rise     int           // passes to come back up, default 2
	Fall     int           // failures to go down, default 3
}

// Health check kinds (HealthCheck.Kind).
const (
	CheckHTTP = "http"
	CheckTCP  = "tcp"
)

// Config of a Balancer. Zero fields take the defaults in brackets.
type Config struct {
	Mode         string // ModeHTTP [default] or ModeTCP
	Policy       string // LeastConnections [default] or RoundRobin
	StickyCookie string // cookie naming the member; "" = not sticky

	MaxHeaderBytes        int           // request head limit [8 KiB]; more → 431
	ReadHeaderTimeout     time.Duration // from first byte to end of head [10s]
	IdleTimeout           time.Duration // client keep-alive idle [60s]
	BodyIdleTimeout       time.Duration // a request or response body moving nothing either way [60s]
	TunnelIdleTimeout     time.Duration // an Upgrade (WebSocket) or tcp-mode tunnel quiet both ways [5m]
	MaxConns              int           // client connections at once [10000]
	MaxConnsPerClient     int           // per client address [256]
	DialTimeout           time.Duration // [2s]
	ResponseHeaderTimeout time.Duration // member response head [60s]
	MaxIdlePerMember      int           // pooled keep-alive connections per member [256]
	MemberIdleTimeout     time.Duration // pooled connection kept this long [30s]
	Retries               int           // extra attempts on other members [2]
	DrainTimeout          time.Duration // Drain waits at most this [30s]
	RetryAfter            time.Duration // Retry-After of the 503 when no member is healthy [1s]

	// Passive ejection: consecutive connect errors/resets [2] or 5xx
	// responses [10] eject a member for a backoff starting at
	// EjectBase [1s] and doubling up to EjectMax [30s].
	PassiveFailures int
	Passive5xx      int
	EjectBase       time.Duration
	EjectMax        time.Duration

	Health HealthCheck

	// Registry receives the balancer's Prometheus series; nil = none.
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

func (c *Config) setDefaults() error {
	switch c.Mode {
	case "":
		c.Mode = ModeHTTP
	case ModeHTTP, ModeTCP:
	default:
		return fmt.Errorf("balancer mode %q: want %s or %s", c.Mode, ModeHTTP, ModeTCP)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt(&c.MaxHeaderBytes, 8<<10)
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.IdleTimeout, 60*time.Second)
	def(&c.BodyIdleTimeout, 60*time.Second)
	def(&c.TunnelIdleTimeout, 5*time.Minute)
	defInt(&c.MaxConns, 10000)
	defInt(&c.MaxConnsPerClient, 256)
	def(&c.DialTimeout, 2*time.Second)
	def(&c.ResponseHeaderTimeout, 60*time.Second)
	defInt(&c.MaxIdlePerMember, 256)
	def(&c.MemberIdleTimeout, 30*time.Second)
	if c.Retries < 0 {
		c.Retries = 0
	} else if c.Retries == 0 {
		c.Retries = 2
	}
	def(&c.DrainTimeout, 30*time.Second)
	def(&c.RetryAfter, time.Second)
	defInt(&c.PassiveFailures, 2)
	defInt(&c.Passive5xx, 10)
	def(&c.EjectBase, time.Second)
	def(&c.EjectMax, 30*time.Second)
	h := &c.Health
	switch h.Kind {
	case "":
		h.Kind = CheckHTTP
	case CheckHTTP, CheckTCP:
	default:
		return fmt.Errorf("balancer health check kind %q: want %s or %s", h.Kind, CheckHTTP, CheckTCP)
	}
	if h.Path == "" {
		h.Path = "/"
	}
	defInt(&h.Status, 200)
	def(&h.Timeout, 2*time.Second)
	defInt(&h.Rise, 2)
	defInt(&h.Fall, 3)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Balancer proxies connections from its listeners to its members.
type Balancer struct {
	cfg     Config
	log     *slog.Logger
	picker  *picker
	dialer  net.Dialer
	passive passiveConfig
	ctx     context.Context // lives as long as the Balancer (health checks)
	stop    context.CancelFunc

	// members is the current set, replaced as a whole on every change so
	// the request path reads it without a lock.
	members atomic.Pointer[[]*backend]
	mu      sync.Mutex // serialises membership changes
	gone    []*backend // removed but still draining, for Status

	// std is the member side of the TLS listener (tls.go).
	std     atomic.Pointer[http.Transport]
	stdOnce sync.Once

	conns   connLimiter
	pools   sync.Pool // *clientConn
	writers sync.Pool // *bufio.Writer for chunked request bodies
	wg      sync.WaitGroup
}

// New returns a Balancer with no members.
func New(cfg Config) (*Balancer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p, err := newPicker(cfg.Policy)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &Balancer{
		cfg:    cfg,
		log:    cfg.Logger,
		picker: p,
		dialer: net.Dialer{Timeout: cfg.DialTimeout},
		passive: passiveConfig{
			failures: cfg.PassiveFailures, burst5xx: cfg.Passive5xx,
			base: cfg.EjectBase, max: cfg.EjectMax,
		},
		ctx:  ctx,
		stop: stop,
	}
	b.conns.perClient = map[string]int{}
	b.members.Store(&[]*backend{})
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(newCollector(b)); err != nil {
			stop()
			return nil, fmt.Errorf("balancer metrics: %w", err)
		}
	}
	return b, nil
}

// Close stops health checks and closes pooled connections. Listeners are
// closed by whoever passed them to Serve.
func (b *Balancer) Close() {
	b.stop()
	for _, m := range *b.members.Load() {
		m.closeIdle(true)
	}
	b.closeStdIdle()
}

// closeStdIdle closes the TLS listener's idle member connections (all
// members': net/http's pool is not per member; the others redial).
func (b *Balancer) closeStdIdle() {
	if t := b.std.Load(); t != nil {
		t.CloseIdleConnections()
	}
}

// Serve accepts connections on ln until ctx ends, then stops accepting,
// closes idle client connections and waits (up to DrainTimeout) for
// requests in progress. Several listeners may be served at once: a port
// change serves the new one before cancelling the old.
func (b *Balancer) Serve(ctx context.Context, ln net.Listener) error {
	var active sync.WaitGroup
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-sctx.Done()
		ln.Close()
	}()
	tracker := newConnTracker()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("balancer accept: %w", err)
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			continue
		}
		key := remoteKey(tc)
		if !b.conns.acquire(key, b.cfg.MaxConns, b.cfg.MaxConnsPerClient) {
			b.overLimit(tc)
			continue
		}
		active.Add(1)
		go func() {
			defer active.Done()
			defer b.conns.release(key)
			if b.cfg.Mode == ModeTCP {
				b.serveTCP(sctx, tc)
				return
			}
			b.serveHTTP(tracker, tc)
		}()
	}
	tracker.shutdown()
	done := make(chan struct{})
	go func() { active.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.cfg.DrainTimeout):
		tracker.closeAll()
		<-done
	}
	return nil
}

// SetMembers replaces the membership. New members start checking (or go
// up at once without active checks); members that left or stopped being
// ready are drained in the background and then closed. Existing
// connections are never cut.
func (b *Balancer) SetMembers(list []Member) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.members.Load()
	byName := make(map[string]*backend, len(old))
	for _, m := range old {
		byName[m.Name] = m
	}
	next := make([]*backend, 0, len(list))
	seen := map[string]bool{}
	for _, m := range list {
		if seen[m.Name] || !m.Addr.IsValid() || m.Port == 0 {
			continue
		}
		seen[m.Name] = true
		cur := byName[m.Name]
		if cur != nil && (cur.Addr != m.Addr || cur.Port != m.Port) {
			cur = nil // moved: the old one is drained below
		} else if cur != nil {
			delete(byName, m.Name)
			cur.weight.Store(int64(max(m.Weight, 1)))
			switch st := cur.state.Load(); {
			case !m.Ready && st < stateDraining:
				go b.drainBackend(cur, false)
			case m.Ready && st == stateDraining:
				// Ready again (its role is back, or a drain before a
				// change that did not happen): in service once checked.
				cur.undrain()
				b.startHealth(cur)
			}
			next = append(next, cur)
			continue
		}
		nb := newBackend(m)
		if !m.Ready {
			nb.state.Store(stateDraining)
		} else {
			b.startHealth(nb)
		}
		next = append(next, nb)
	}
	sort.Slice(next, func(i, j int) bool { return next[i].Name < next[j].Name })
	b.members.Store(&next)
	for _, m := range byName {
		b.gone = append(b.gone, m)
		go b.drainBackend(m, true)
	}
}

// Run follows a membership source until ctx ends.
func (b *Balancer) Run(ctx context.Context, src Members) error {
	b.SetMembers(src.Members())
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-src.Changed():
			b.SetMembers(src.Members())
		case <-tick.C:
			now := time.Now().UnixNano()
			for _, m := range *b.members.Load() {
				m.closeStale(b.cfg.MemberIdleTimeout, now)
				m.latency.mark()
			}
		}
	}
}

// Drain takes member node out of rotation: no new requests go to it,
// requests in flight finish, its idle pooled connections are closed. It
// returns when nothing is in flight or ctx (bounded by DrainTimeout) ends.
// The member stays drained until the membership drops it or lists it not
// ready and then ready again. The controller calls it before changing a
// node's role.
func (b *Balancer) Drain(ctx context.Context, node string) error {
	var target *backend
	for _, m := range *b.members.Load() {
		if m.Name == node {
			target = m
		}
	}
	if target == nil {
		return nil // not a member: nothing to drain
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.DrainTimeout)
	defer cancel()
	return b.drainWait(ctx, target, false)
}

func (b *Balancer) drainBackend(m *backend, remove bool) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.DrainTimeout)
	defer cancel()
	if err := b.drainWait(ctx, m, remove); err != nil {
		b.log.Warn("balancer: drain timed out", "member", m.Name, "inflight", m.inflight.Load())
	}
	if remove {
		b.mu.Lock()
		for i, g := range b.gone {
			if g == m {
				b.gone = append(b.gone[:i], b.gone[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
	}
}

func (b *Balancer) drainWait(ctx context.Context, m *backend, remove bool) error {
	m.backoffMu.Lock()
	if m.drained == nil {
		m.drained = make(chan struct{})
	}
	ch := m.drained
	m.backoffMu.Unlock()
	if remove {
		m.state.Store(stateRemoved)
		if m.stopHealth != nil {
			m.stopHealth()
		}
	} else if m.state.Load() < stateDraining {
		m.state.Store(stateDraining)
	}
	m.closeIdle(false)
	b.closeStdIdle()
	if m.inflight.Load() == 0 {
		m.signalDrained()
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
	m.closeIdle(remove)
	if m.inflight.Load() > 0 {
		return fmt.Errorf("drain %s: %d requests still in flight: %w", m.Name, m.inflight.Load(), ctx.Err())
	}
	return nil
}

// pick chooses a member, honouring a sticky cookie when it names a usable
// one.
func (b *Balancer) pick(sticky []byte, skip []*backend, now int64) *backend {
	members := *b.members.Load()
	if len(sticky) > 0 {
		for _, m := range members {
			if m.Name == string(sticky) {
				if m.usable(now) && !tried(m, skip) {
					return m
				}
				break
			}
		}
	}
	return b.picker.pick(members, skip, now)
}

// remoteKey is the client address without port, for the per-client limit.
func remoteKey(c *net.TCPConn) string {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	return string(a.IP)
}

// connLimiter bounds client connections in total and per client address.
type connLimiter struct {
	mu        sync.Mutex
	total     int
	perClient map[string]int
}

func (l *connLimiter) acquire(key string, maxTotal, maxPer int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= maxTotal || l.perClient[key] >= maxPer {
		return false
	}
	l.total++
	l.perClient[key]++
	return true
}

func (l *connLimiter) release(key string) {
	l.mu.Lock()
	l.total--
	if n := l.perClient[key] - 1; n > 0 {
		l.perClient[key] = n
	} else {
		delete(l.perClient, key)
	}
	l.mu.Unlock()
}
