package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/balancer"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/roles"
)

// balancerComponent runs the built-in balancer on ports.balancer in front
// of the nodes of cluster.yaml's balancer.role (web by default): members
// are the nodes Membership lists whose agent reports the role active;
// the balancer's health checks then decide. A node leaving the role is
// drained first (Drainer), a removed one after. Settings changed in
// cluster.yaml take effect without a restart: a new balancer takes over
// the same socket (a port change opens the new one before closing the
// old), the old one finishes its requests.
type balancerComponent struct {
	host       string // listen host; "" = every address (clients come from any network, like the API's)
	log        *slog.Logger
	cluster    func() *cluster.Cluster
	membership func() (Membership, bool)
	// roleCheck is the health check the role's definition asks for.
	roleCheck func(role string) (roles.HealthCheck, bool)
	// membersEvery re-reads the members even without a change notice:
	// a node's address (its lease) can change under the same membership.
	membersEvery time.Duration

	pendingMu sync.Mutex
	pending   *cluster.Cluster // the newest state Reload saw, for Serve
	reloaded  chan struct{}    // 1-buffered: pending is set

	mu      sync.Mutex
	port    *portListener
	tlsPort *portListener // nil: no TLS listener
	run     *balancerRun
	// cert is the TLS listener's certificate, read again on every reload
	// (a renewed certificate needs no restart).
	cert   atomic.Pointer[tls.Certificate]
	stopWG sync.WaitGroup // runs and ports being retired
}

// balancerRun is one Balancer with the settings it was built from, served
// on one port view, fed by one member feed.
type balancerRun struct {
	b      *balancer.Balancer
	cfg    balancer.Config // as built, without Registry and Logger
	role   string
	feed   *memberFeed
	ctx    context.Context
	cancel context.CancelFunc
	serves []*servedView
}

type servedView struct {
	port   *portListener
	cancel context.CancelFunc
	done   chan struct{}
}

func newBalancerComponent(c *Controller) *balancerComponent {
	bc := &balancerComponent{
		log:          c.log.With("component", "balancer"),
		cluster:      c.Cluster,
		membership:   c.Membership,
		membersEvery: 5 * time.Second,
		reloaded:     make(chan struct{}, 1),
	}
	// A broken user role file keeps the check last read: the roles
	// component keeps every node's layer then, and the balancer its checks.
	var lastMu sync.Mutex
	last := map[string]roles.HealthCheck{}
	bc.roleCheck = func(role string) (roles.HealthCheck, bool) {
		lastMu.Lock()
		defer lastMu.Unlock()
		if c.roleCatalog == nil {
			return roles.HealthCheck{}, false
		}
		rend, err := c.roleCatalog(userRolesDir(c.cfg.Store))
		if err != nil {
			hc, ok := last[role]
			return hc, ok
		}
		src, ok := rend.(interface {
			BalancerCheck(role string) (roles.HealthCheck, bool)
		})
		if !ok {
			return roles.HealthCheck{}, false
		}
		hc, ok := src.BalancerCheck(role)
		if ok {
			last[role] = hc
		} else {
			delete(last, role)
		}
		return hc, ok
	}
	c.metrics.MustRegister(currentBalancerCollector{bc})
	return bc
}

// BalancerCheck is the health check role's definition gives the balancer.
func (r catalogRenderer) BalancerCheck(role string) (roles.HealthCheck, bool) {
	ro, ok := r.c.Role(role)
	if !ok {
		return roles.HealthCheck{}, false
	}
	_, check, ok := ro.Balancer()
	return check, ok
}

func (*balancerComponent) Name() string { return "balancer" }

// Listen opens ports.balancer and builds the first balancer.
func (bc *balancerComponent) Listen() error {
	cl := bc.cluster()
	p, err := openPort("tcp", bc.listenAddr(cl))
	if err != nil {
		return fmt.Errorf("ports.balancer: %w", err)
	}
	run, err := bc.newRun(cl)
	if err != nil {
		p.close()
		return err
	}
	var tp *portListener
	if t := cl.Balancer.TLS; t != nil {
		err := bc.loadCert(t)
		if err == nil {
			tp, err = openPort("tcp", net.JoinHostPort(bc.host, strconv.Itoa(int(t.TLSPort()))))
			if err != nil {
				err = fmt.Errorf("balancer.tls.port: %w", err)
			}
		}
		if err != nil {
			p.close()
			run.b.Close()
			return err
		}
		tp.tls = true
	}
	bc.mu.Lock()
	bc.port, bc.tlsPort, bc.run = p, tp, run
	bc.mu.Unlock()
	return nil
}

// loadCert reads balancer.tls's files.
func (bc *balancerComponent) loadCert(t *cluster.BalancerTLS) error {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return fmt.Errorf("balancer.tls: %w", err)
	}
	bc.cert.Store(&cert)
	return nil
}

func (bc *balancerComponent) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return bc.cert.Load(), nil
		},
	}
}

func (bc *balancerComponent) listenAddr(cl *cluster.Cluster) string {
	return net.JoinHostPort(bc.host, strconv.Itoa(int(cl.Ports.Balancer)))
}

// Run is for a component list that did not call Listen.
func (bc *balancerComponent) Run(ctx context.Context) error {
	if err := bc.Listen(); err != nil {
		return err
	}
	return bc.Serve(ctx)
}

// Serve balances until ctx ends, applying new cluster states as they come.
func (bc *balancerComponent) Serve(ctx context.Context) error {
	bc.mu.Lock()
	bc.startRun(ctx, bc.run)
	bc.serveOn(bc.run, bc.port)
	if bc.tlsPort != nil {
		bc.serveOn(bc.run, bc.tlsPort)
	}
	bc.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			bc.mu.Lock()
			bc.retire(bc.run, bc.port, bc.tlsPort)
			bc.mu.Unlock()
			bc.stopWG.Wait()
			return nil
		case <-bc.reloaded:
			bc.pendingMu.Lock()
			cl := bc.pending
			bc.pending = nil
			bc.pendingMu.Unlock()
			if cl != nil {
				bc.apply(ctx, cl)
			}
		}
	}
}

// Reload hands the new state to Serve, which applies it in order.
func (bc *balancerComponent) Reload(_ context.Context, cl *cluster.Cluster) error {
	bc.pendingMu.Lock()
	bc.pending = cl
	bc.pendingMu.Unlock()
	select {
	case bc.reloaded <- struct{}{}:
	default:
	}
	return nil
}

// apply follows a new cluster state: a new balancer when its settings
// changed, a new socket when the port did, new members in any case. Only
// Serve's goroutine calls it, and only it (and Listen) replaces bc.run and
// bc.port; bc.mu guards them for the readers (Drain, status, metrics).
func (bc *balancerComponent) apply(ctx context.Context, cl *cluster.Cluster) {
	bc.mu.Lock()
	run, port, tlsPort := bc.run, bc.port, bc.tlsPort
	bc.mu.Unlock()
	cfg, role := bc.settings(cl)
	if cfg != run.cfg || role != run.role {
		next, err := bc.newRun(cl)
		if err != nil {
			bc.log.Error("balancer settings rejected; keeping the old ones", "err", err)
		} else {
			bc.startRun(ctx, next)
			warmUp(ctx, next, run) // unlocked: drains and status go to the old one meanwhile
			bc.mu.Lock()
			bc.serveOn(next, port) // takes the socket's next connection
			if tlsPort != nil {
				bc.serveOn(next, tlsPort)
			}
			bc.retire(run) // finishes what it has
			bc.run, run = next, next
			bc.mu.Unlock()
			bc.log.Info("balancer settings changed; a new balancer took over", "role", role, "mode", next.cfg.Mode, "policy", next.cfg.Policy)
		}
	}
	if !samePort(port.Addr(), cl.Ports.Balancer, bc.host) {
		p, err := openPort("tcp", bc.listenAddr(cl))
		if err != nil {
			bc.log.Error("ports.balancer changed but the new port cannot be opened; still serving the old one", "port", cl.Ports.Balancer, "err", err)
		} else {
			bc.mu.Lock()
			bc.serveOn(run, p) // the new socket serves before the old one closes
			bc.stopServes(run, port)
			bc.port = p
			bc.mu.Unlock()
			bc.closePortAfter(port)
			bc.log.Info("balancer moved to a new port", "listen", p.Addr().String())
		}
	}
	bc.applyTLS(cl, run, tlsPort)
	run.feed.poke() // weights may have changed
}

// applyTLS follows balancer.tls: the certificate is read again, and the
// listener opened, moved or closed as the file says.
func (bc *balancerComponent) applyTLS(cl *cluster.Cluster, run *balancerRun, tlsPort *portListener) {
	t := cl.Balancer.TLS
	if t == nil {
		if tlsPort != nil {
			bc.mu.Lock()
			bc.stopServes(run, tlsPort)
			bc.tlsPort = nil
			bc.mu.Unlock()
			bc.closePortAfter(tlsPort)
			bc.log.Info("balancer TLS listener closed")
		}
		return
	}
	if err := bc.loadCert(t); err != nil {
		if tlsPort == nil {
			bc.log.Error("balancer TLS certificate unreadable; no TLS listener", "err", err)
			return
		}
		bc.log.Error("balancer TLS certificate unreadable; keeping the one in use", "err", err)
	}
	if tlsPort != nil && samePort(tlsPort.Addr(), t.TLSPort(), bc.host) {
		return
	}
	p, err := openPort("tcp", net.JoinHostPort(bc.host, strconv.Itoa(int(t.TLSPort()))))
	if err != nil {
		bc.log.Error("balancer.tls.port cannot be opened", "port", t.TLSPort(), "err", err)
		return
	}
	p.tls = true
	bc.mu.Lock()
	bc.serveOn(run, p)
	if tlsPort != nil {
		bc.stopServes(run, tlsPort)
	}
	bc.tlsPort = p
	bc.mu.Unlock()
	if tlsPort != nil {
		bc.closePortAfter(tlsPort)
	}
	bc.log.Info("balancer TLS listener open", "listen", p.Addr().String())
}

// warmUp waits until next has as many members up as old (its first
// health checks passed), so the switch answers no request with 503;
// bounded by a few check intervals.
func warmUp(ctx context.Context, next, old *balancerRun) {
	up := func(r *balancerRun) int {
		n := 0
		for _, m := range r.b.Status().Members {
			if m.State == "up" {
				n++
			}
		}
		return n
	}
	h := next.cfg.Health
	bound := time.Second
	if h.Interval > 0 {
		bound = min(max(h.Timeout+3*h.Interval, time.Second), 15*time.Second)
	}
	deadline := time.Now().Add(bound)
	want := up(old)
	for up(next) < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

// samePort: the listener already has port on host.
func samePort(a net.Addr, port uint16, host string) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.Port == int(port) && (host == "" || ta.IP.String() == host)
}

// settings is the balancer configuration cl asks for (comparable: a
// change of it replaces the balancer).
func (bc *balancerComponent) settings(cl *cluster.Cluster) (balancer.Config, string) {
	b := cl.Balancer
	role := b.BalancedRole()
	cfg := balancer.Config{
		Mode:         b.Mode,
		Policy:       balancer.LeastConnections,
		StickyCookie: b.StickyCookie,
		DrainTimeout: b.DrainTimeout.D(),
	}
	if b.Policy == "round-robin" {
		cfg.Policy = balancer.RoundRobin
	}
	if rc, ok := bc.roleCheck(role); ok {
		cfg.Health = balancer.HealthCheck{Kind: rc.Kind, Path: rc.Path, Interval: rc.Interval, Timeout: rc.Timeout}
	}
	o, h := b.Check, &cfg.Health
	if o.Kind != "" {
		h.Kind = o.Kind
	}
	if o.Path != "" {
		h.Path = o.Path
	}
	if o.Status != 0 {
		h.Status = o.Status
	}
	if o.Interval != 0 {
		h.Interval = o.Interval.D()
	}
	if o.Timeout != 0 {
		h.Timeout = o.Timeout.D()
	}
	if o.Rise != 0 {
		h.Rise = o.Rise
	}
	if o.Fall != 0 {
		h.Fall = o.Fall
	}
	return cfg, role
}

func (bc *balancerComponent) newRun(cl *cluster.Cluster) (*balancerRun, error) {
	cfg, role := bc.settings(cl)
	full := cfg
	full.Logger = bc.log
	b, err := balancer.New(full)
	if err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	run := &balancerRun{b: b, cfg: cfg, role: role}
	run.feed = &memberFeed{changed: make(chan struct{}, 1), members: func() []balancer.Member { return bc.members(role) }}
	return run, nil
}

// startRun follows the membership for run until it is retired.
func (bc *balancerComponent) startRun(ctx context.Context, run *balancerRun) {
	run.ctx, run.cancel = context.WithCancel(ctx)
	go run.feed.watch(run.ctx, bc.membership, bc.membersEvery)
	go run.b.Run(run.ctx, run.feed)
}

// serveOn serves run on a view of p; bc.mu held.
func (bc *balancerComponent) serveOn(run *balancerRun, p *portListener) {
	sctx, cancel := context.WithCancel(run.ctx)
	sv := &servedView{port: p, cancel: cancel, done: make(chan struct{})}
	run.serves = append(run.serves, sv)
	go func() {
		defer close(sv.done)
		var err error
		if p.tls {
			err = run.b.ServeTLS(sctx, p.view(), bc.tlsConfig())
		} else {
			err = run.b.Serve(sctx, p.view())
		}
		if err != nil {
			bc.log.Error("balancer stopped accepting", "err", err)
		}
	}()
}

// stopServes stops run's views of p: they accept no more and finish
// their connections (up to the drain timeout). bc.mu held.
func (bc *balancerComponent) stopServes(run *balancerRun, p *portListener) {
	keep := run.serves[:0]
	for _, sv := range run.serves {
		if sv.port == p {
			sv.cancel()
		} else {
			keep = append(keep, sv)
		}
	}
	run.serves = keep
}

// retire stops run: its views stop accepting, its connections finish,
// then its member connections close; ports (if any) close once nothing
// accepts on them. bc.mu held.
func (bc *balancerComponent) retire(run *balancerRun, ports ...*portListener) {
	serves := run.serves
	run.serves = nil
	bc.stopWG.Add(1)
	go func() {
		defer bc.stopWG.Done()
		for _, sv := range serves {
			sv.cancel()
		}
		for _, p := range ports {
			if p != nil {
				p.close()
			}
		}
		for _, sv := range serves {
			<-sv.done
		}
		run.cancel()
		run.b.Close()
	}()
}

// closePortAfter closes a port no view reads any more.
func (bc *balancerComponent) closePortAfter(p *portListener) {
	bc.stopWG.Add(1)
	go func() {
		defer bc.stopWG.Done()
		p.close()
	}()
}

// members is the balancer's view of the role's nodes.
func (bc *balancerComponent) members(role string) []balancer.Member {
	ms, ok := bc.membership()
	if !ok {
		return nil
	}
	weights := bc.cluster().Balancer.Weights
	var out []balancer.Member
	for _, m := range ms.Members(role) {
		if m.Port <= 0 || m.Port > 65535 {
			continue
		}
		out = append(out, balancer.Member{
			Name:   m.Node,
			Addr:   m.Addr,
			Port:   uint16(m.Port),
			Weight: weights[m.Node],
			Ready:  m.State == api.RoleActive,
		})
	}
	return out
}

// Drain takes node out of the balancer before its role changes.
func (bc *balancerComponent) Drain(ctx context.Context, role, node string, _ netip.Addr) error {
	bc.mu.Lock()
	run := bc.run
	bc.mu.Unlock()
	if run == nil || role != run.role {
		return nil
	}
	bc.log.Info("draining before the role changes", "node", node, "role", role)
	return run.b.Drain(ctx, node)
}

// Balancer answers GET /v1/balancer.
func (bc *balancerComponent) Balancer() api.Balancer {
	bc.mu.Lock()
	run, port, tlsPort := bc.run, bc.port, bc.tlsPort
	bc.mu.Unlock()
	if run == nil {
		return api.Balancer{Role: bc.cluster().Balancer.BalancedRole()}
	}
	out := api.Balancer{Role: run.role}
	if port != nil {
		out.Listen = port.Addr().String()
	}
	if tlsPort != nil {
		out.TLSListen = tlsPort.Addr().String()
	}
	st := run.b.Status()
	out.Mode, out.StickyCookie = st.Mode, run.cfg.StickyCookie
	out.Policy = "least-conn"
	if st.Policy == balancer.RoundRobin {
		out.Policy = "round-robin"
	}
	out.Check = describeCheck(run.cfg.Health)
	// A member out of rotation because its agent does not report the
	// role active says so, rather than just "draining".
	roleState := map[string]string{}
	if ms, ok := bc.membership(); ok {
		for _, m := range ms.Members(run.role) {
			roleState[m.Node] = m.State
		}
	}
	for _, m := range st.Members {
		state := m.State
		if rs, ok := roleState[m.Name]; ok && rs != api.RoleActive && state == "draining" {
			state = "role " + rs
		}
		out.Members = append(out.Members, api.BalancerMember{
			Node: m.Name, Address: m.Address, Weight: m.Weight, State: state,
			InFlight: m.InFlight, Requests: m.Requests, Errors: m.Errors, Ejections: m.Ejections,
			P50: m.P50.Seconds(), P99: m.P99.Seconds(),
		})
	}
	return out
}

func describeCheck(h balancer.HealthCheck) string {
	if h.Interval <= 0 {
		return "off (members serve once their role is active)"
	}
	if h.Kind == balancer.CheckTCP {
		return fmt.Sprintf("tcp connect every %s", h.Interval)
	}
	path, status := h.Path, h.Status
	if path == "" {
		path = "/"
	}
	if status == 0 {
		status = 200
	}
	return fmt.Sprintf("http GET %s → %d every %s", path, status, h.Interval)
}

// memberFeed is balancer.Members for one run: Changed is signalled on
// every membership change, reload, and every interval.
type memberFeed struct {
	members func() []balancer.Member
	changed chan struct{}
}

func (f *memberFeed) Members() []balancer.Member { return f.members() }
func (f *memberFeed) Changed() <-chan struct{}   { return f.changed }

func (f *memberFeed) poke() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *memberFeed) watch(ctx context.Context, membership func() (Membership, bool), every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		var changes <-chan struct{}
		if ms, ok := membership(); ok {
			changes = ms.Changes()
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-tick.C:
		}
		f.poke()
	}
}

// currentBalancerCollector exports the series of whichever balancer is in
// force. It describes nothing up front (an unchecked collector): the
// balancer it asks changes with the settings.
type currentBalancerCollector struct{ bc *balancerComponent }

func (currentBalancerCollector) Describe(chan<- *prometheus.Desc) {}

func (c currentBalancerCollector) Collect(ch chan<- prometheus.Metric) {
	c.bc.mu.Lock()
	run := c.bc.run
	c.bc.mu.Unlock()
	if run != nil {
		run.b.Collector().Collect(ch)
	}
}

// balancerStatus is the component that answers for the balancer.
type balancerStatus interface {
	Balancer() api.Balancer
}

// Balancer answers GET /v1/balancer; false when no balancer runs.
func (c *Controller) Balancer(context.Context) (api.Balancer, bool) {
	bs, ok := firstComponent[balancerStatus](c)
	if !ok {
		return api.Balancer{}, false
	}
	return bs.Balancer(), true
}
