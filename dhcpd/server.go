package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	"golang.org/x/net/ipv4"
)

// ErrRestartRequired is returned by Reconfigure for changes that need new
// sockets (interfaces, ports, workers): the caller must restart the server.
var ErrRestartRequired = errors.New("dhcpd: change needs a restart")

// Server is the DHCP server. Create it with New, open its sockets with
// Listen, run it with Serve (or both with Run).
type Server struct {
	cfg       atomic.Pointer[settings]
	nodes     Nodes
	store     *Store
	log       *slog.Logger
	metrics   *metrics
	leases    *leaseTable
	committer *committer
	limiter   *rateLimiter

	// Set by Listen.
	ifaces    *ifaceTable
	ifIndexes map[int]bool // interfaces served; empty = all but loopback
	main      *dhcpConn
	proxy     *dhcpConn // proxy mode's PXE port (4011), or nil
	prober    *prober

	seenMu sync.Mutex
	seen   map[hwKey]time.Time // last discovered-record write per MAC
	fresh  newRecords          // rate of records of new clients

	serving atomic.Bool
	stopped chan struct{}
}

// New checks cfg and loads the leases from db (the controller's runtime
// database; dhcpd creates its buckets). nodes must not be nil; log and reg
// may be (no logging, no metrics registration).
func New(cfg Config, nodes Nodes, db *bbolt.DB, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if nodes == nil {
		return nil, fmt.Errorf("%w: no Nodes", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	store, err := OpenStore(db)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		nodes:   nodes,
		store:   store,
		log:     log,
		metrics: m,
		leases:  newLeaseTable(nodes),
		limiter: newRateLimiter(st.RateLimit, st.RateBurst),
		seen:    make(map[hwKey]time.Time),
		stopped: make(chan struct{}),
	}
	s.committer = newCommitter(db, m, st.Now)
	s.committer.maxDiscovered = func() int { return s.cfg.Load().MaxDiscovered }
	s.committer.linger = st.CommitLinger
	s.committer.store, s.committer.log = store, log
	if !st.DirectCommit {
		if err := store.applyJournal(); err != nil {
			return nil, err
		}
		s.committer.journalPath = store.journal
	}
	leases, err := store.Leases()
	if err != nil {
		return nil, err
	}
	now := st.Now()
	s.leases.load(leases, now)
	s.leases.setPools(st.subnets, now)
	s.cfg.Store(st)
	if reg != nil {
		err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pictl_dhcpd_active_leases",
			Help: "Leases bound and not expired.",
		}, func() float64 {
			a, _ := s.leases.counts(s.cfg.Load().Now())
			return float64(a)
		}))
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Name names the component for the controller.
func (s *Server) Name() string { return "dhcpd" }

// Store is the server's view of its buckets (lease and discovery listings).
func (s *Server) Store() *Store { return s.store }

// Listen opens the server's sockets in the calling thread's network
// namespace: the DHCP port on every address, proxy mode's PXE port, the
// netlink socket that reads interface addresses, and the start-up probe's
// client sockets.
func (s *Server) Listen() (err error) {
	if s.main != nil {
		return errors.New("dhcpd: Listen called twice")
	}
	cfg := s.cfg.Load()
	defer func() {
		if err != nil {
			s.closeSockets()
		}
	}()
	if s.ifaces, err = openIfaceTable(); err != nil {
		return fmt.Errorf("dhcpd: %w", err)
	}
	s.ifIndexes = make(map[int]bool)
	for _, name := range cfg.Interfaces {
		ifc := s.ifaces.byName(name)
		if ifc == nil {
			return fmt.Errorf("dhcpd: interface %q does not exist", name)
		}
		s.ifIndexes[ifc.index] = true
	}
	if s.main, err = listenDHCP(cfg.Port); err != nil {
		return fmt.Errorf("dhcpd: %w", err)
	}
	if cfg.Mode == ModeProxy && cfg.ProxyPort > 0 {
		if s.proxy, err = listenDHCP(cfg.ProxyPort); err != nil {
			return fmt.Errorf("dhcpd: %w", err)
		}
	}
	if cfg.Mode == ModeFull && !cfg.SkipProbe {
		if s.prober, err = s.openProber(cfg); err != nil {
			return fmt.Errorf("dhcpd: %w", err)
		}
	}
	return nil
}

// Run is Listen then Serve.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve answers requests until ctx is cancelled, then closes the sockets,
// finishes the pending commits and returns.
func (s *Server) Serve(ctx context.Context) error {
	if s.main == nil {
		return errors.New("dhcpd: Serve before Listen")
	}
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("dhcpd: Serve called twice")
	}
	defer close(s.stopped)
	cfg := s.cfg.Load()
	var commitDone sync.WaitGroup
	commitDone.Go(func() { s.committer.run(func(ops []commitOp, err error) { s.afterCommit(ctx, ops, err) }) })

	var readers sync.WaitGroup
	for range cfg.Workers {
		readers.Go(func() { s.readLoop(ctx, s.main, cfg.Port) })
	}
	if s.proxy != nil {
		readers.Go(func() { s.readLoop(ctx, s.proxy, cfg.ProxyPort) })
	}
	var aux sync.WaitGroup
	if s.prober != nil {
		p := s.prober
		aux.Go(func() { s.runProbe(ctx, p) })
	}
	aux.Go(func() { s.housekeeping(ctx) })
	s.log.Info("dhcp server running", "mode", string(cfg.Mode), "port", cfg.Port, "interfaces", cfg.Interfaces)

	<-ctx.Done()
	s.closeSockets()
	readers.Wait()
	aux.Wait()
	close(s.committer.ch)
	commitDone.Wait()
	return nil
}

func (s *Server) closeSockets() {
	for _, c := range []*dhcpConn{s.main, s.proxy} {
		if c != nil {
			c.close()
		}
	}
	if s.prober != nil {
		s.prober.close()
	}
	if s.ifaces != nil {
		s.ifaces.close()
	}
}

// readBatch is how many datagrams one recvmmsg may return.
const readBatch = 32

func (s *Server) readLoop(ctx context.Context, c *dhcpConn, port int) {
	ms := make([]ipv4.Message, readBatch)
	oobSize := len(ipv4.NewControlMessage(ipv4.FlagInterface | ipv4.FlagDst))
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 4096)}
		ms[i].OOB = make([]byte, oobSize)
	}
	var out []*reply
	var prev time.Time // when the previous read returned
	for {
		n, err := c.pc.ReadBatch(ms, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		busy := n > 1 || now.Sub(prev) < 2*s.cfg.Load().ReadCoalesce
		prev = now
		out = out[:0]
		for i := range ms[:n] {
			m := &ms[i]
			in := packetIn{data: m.Buffers[0][:m.N], port: port, received: now}
			var cm ipv4.ControlMessage
			if cm.Parse(m.OOB[:m.NN]) == nil {
				in.ifIndex = cm.IfIndex
			}
			if u, ok := m.Addr.(*net.UDPAddr); ok {
				in.src = u.AddrPort()
				in.src = netip.AddrPortFrom(in.src.Addr().Unmap(), in.src.Port())
			}
			if rep := s.processSafe(ctx, c, &in); rep != nil {
				out = append(out, rep)
			}
		}
		s.send(c, out)
		// Under load, let requests gather for the next read (see
		// Config.ReadCoalesce); a full batch means more are waiting.
		if co := s.cfg.Load().ReadCoalesce; busy && co > 0 && n < readBatch {
			if d := co - time.Since(now); d > 0 {
				time.Sleep(d)
			}
		}
	}
}

// process handles one packet; it returns a reply to send now, or nil (no
// reply, or one that waits for its commit or its delay).
func (s *Server) process(ctx context.Context, c *dhcpConn, in *packetIn) *reply {
	rep, r, outcome := s.handle(in)
	if r == nil {
		return nil
	}
	s.logDecision(r, rep, outcome)
	if rep == nil {
		s.metrics.count(r.typ, r.client.Class, outcome)
		return nil
	}
	rep.conn, rep.outcome = c, outcome
	if rep.commit != nil {
		// Sent by afterCommit, once the lease is on disk; encoded here so
		// the committer only writes.
		rep.wire = rep.msg.encode()
		s.committer.submit(commitOp{lease: rep.commit, reply: rep})
		return nil
	}
	s.metrics.count(r.typ, r.client.Class, outcome)
	if rep.delay > 0 {
		s.sendLater(ctx, rep)
		return nil
	}
	return rep
}

// afterCommit sends the replies whose records the committer just wrote.
func (s *Server) afterCommit(ctx context.Context, ops []commitOp, err error) {
	var now []*reply
	for _, op := range ops {
		rep := op.reply
		if rep == nil {
			continue
		}
		if err != nil {
			s.metrics.count(rep.reqType, rep.class, outCommitFailed)
			s.log.Error("lease not committed, reply withheld", "mac", rep.commit.MAC.String(), "ip", rep.commit.IP.String(), "error", err)
			continue
		}
		s.metrics.count(rep.reqType, rep.class, rep.outcome)
		if rep.delay > 0 {
			s.sendLater(ctx, rep)
			continue
		}
		now = append(now, rep)
	}
	// Replies may come from both sockets' requests.
	for len(now) > 0 {
		c := now[0].conn
		var same, rest []*reply
		for _, r := range now {
			if r.conn == c {
				same = append(same, r)
			} else {
				rest = append(rest, r)
			}
		}
		s.send(c, same)
		now = rest
	}
}

func (s *Server) sendLater(ctx context.Context, rep *reply) {
	time.AfterFunc(rep.delay, func() {
		if ctx.Err() == nil {
			s.send(rep.conn, []*reply{rep})
		}
	})
}

// sendBatch writes replies with as few sendmmsg calls as the kernel allows.
func (s *Server) sendBatch(c *dhcpConn, reps []*reply) {
	if len(reps) == 0 {
		return
	}
	ms := make([]ipv4.Message, len(reps))
	for i, rep := range reps {
		var src netip.Addr
		if rep.src.IsValid() && s.isLocal(rep.src, rep.ifIndex) {
			src = rep.src
		}
		if rep.wire == nil {
			rep.wire = rep.msg.encode()
		}
		rep.bufs[0] = rep.wire
		ms[i] = c.message(rep.bufs[:], rep.dst, rep.ifIndex, src)
	}
	writeBatch(c.out, ms, func(i int) {
		rep := reps[i]
		s.metrics.observe(rep.msg.typ, time.Since(rep.received)-rep.delay)
	}, func(i int, err error) {
		s.metrics.sendErrors.Inc()
		s.log.Debug("reply not sent", "dst", reps[i].dst.String(), "error", err)
	})
}

// batchWriter is the sending half of a DHCP socket (ipv4.PacketConn).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// writeBatch hands every message to w once, calling sent or failed for
// each index. sendmmsg reports -1 with its error when the first datagram
// fails (e.g. no route to a client's ciaddr), and a writer may also report
// zero or too many; none of that may stop the server: the refused datagram
// is skipped and the rest are tried.
func writeBatch(w batchWriter, ms []ipv4.Message, sent func(int), failed func(int, error)) {
	for next := 0; next < len(ms); {
		n, err := w.WriteBatch(ms[next:], 0)
		n = max(0, min(n, len(ms)-next))
		for i := next; i < next+n; i++ {
			sent(i)
		}
		next += n
		if next == len(ms) {
			return
		}
		if err == nil && n == 0 {
			err = errors.New("sendmmsg sent nothing")
		}
		if err != nil {
			failed(next, err)
			next++
		}
	}
}

// isLocal reports whether a is an address of interface ifIndex (any
// interface when 0), i.e. usable as the reply's source.
func (s *Server) isLocal(a netip.Addr, ifIndex int) bool {
	if s.ifaces == nil {
		return false
	}
	if ifIndex != 0 {
		ifc := s.ifaces.get(ifIndex)
		return ifc != nil && ifc.has(a)
	}
	for _, ifc := range s.ifaces.all() {
		if ifc.has(a) {
			return true
		}
	}
	return false
}

func (s *Server) housekeeping(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := s.cfg.Load().Now()
		s.leases.sweep(now)
		if n++; n%60 == 0 {
			s.limiter.sweep(now)
			s.expireDiscovered(now)
			s.seenMu.Lock()
			for k, t := range s.seen {
				if now.Sub(t) > 10*time.Minute {
					delete(s.seen, k)
				}
			}
			s.seenMu.Unlock()
		}
		if n%30 == 0 && s.ifaces != nil {
			_ = s.ifaces.refresh()
		}
	}
}

// recordDiscovered writes an unknown booting client to the store, at most
// once a minute per MAC.
func (s *Server) recordDiscovered(r *request) {
	s.seenMu.Lock()
	if last, ok := s.seen[r.mac]; ok && r.now.Sub(last) < time.Minute {
		s.seenMu.Unlock()
		return
	}
	if _, known := s.seen[r.mac]; !known && !s.fresh.allow(r.now) {
		// Over the rate of new clients (forged MACs, most likely).
		s.seenMu.Unlock()
		s.metrics.droppedRecords.Inc()
		return
	}
	if len(s.seen) >= maxSeen {
		// A flood of new MACs (forged, most likely): stop recording
		// until housekeeping ages the table.
		s.seenMu.Unlock()
		s.metrics.droppedRecords.Inc()
		return
	}
	s.seen[r.mac] = r.now
	s.seenMu.Unlock()
	d := &Discovered{
		MAC:           slices.Clone(r.pkt.chaddr),
		Class:         r.client.Class,
		Serial:        r.client.Serial,
		BoardRevision: r.client.BoardRevision,
		Arch:          r.client.Arch,
		VendorClass:   r.client.VendorClass,
		FirstSeen:     r.now,
		LastSeen:      r.now,
	}
	if r.ifc != nil {
		d.Interface = r.ifc.name
	}
	if r.relayed {
		d.Relay = r.pkt.gateway()
	}
	ok := s.committer.trySubmit(commitOp{discovered: d, done: func(err error, isNew bool) {
		switch {
		case err != nil:
			s.log.Error("discovered client not recorded", "mac", d.MAC.String(), "error", err)
		case isNew:
			s.log.Info("new client discovered", "mac", d.MAC.String(), "class", d.Class.String(),
				"serial", d.Serial, "interface", d.Interface)
		}
	}})
	if !ok {
		s.metrics.droppedRecords.Inc()
	}
}

// maxSeen bounds the discovered-record throttle table.
const maxSeen = 1 << 16

// Forget removes a discovered client (adopted as a node) and lets the next
// packet from it be recorded again at once.
func (s *Server) Forget(mac net.HardwareAddr) (bool, error) {
	s.seenMu.Lock()
	delete(s.seen, keyOf(mac))
	s.seenMu.Unlock()
	return s.store.Forget(mac)
}

// Leases returns the server's lease records as it holds them in memory
// (every bound one is also on disk).
func (s *Server) Leases() []Lease { return s.leases.snapshot() }

// Reconfigure applies a new configuration without dropping leases. Changes
// of interfaces, ports, workers, mode, commit linger or journal need new sockets or
// goroutines: they return ErrRestartRequired and change nothing.
func (s *Server) Reconfigure(cfg Config) error {
	next, err := compile(cfg)
	if err != nil {
		return err
	}
	cur := s.cfg.Load()
	if !slices.Equal(next.Interfaces, cur.Interfaces) || next.Port != cur.Port || next.ProxyPort != cur.ProxyPort ||
		next.Workers != cur.Workers || next.Mode != cur.Mode || next.CommitLinger != cur.CommitLinger ||
		next.DirectCommit != cur.DirectCommit {
		return ErrRestartRequired
	}
	s.leases.setPools(next.subnets, next.Now())
	s.cfg.Store(next)
	return nil
}
