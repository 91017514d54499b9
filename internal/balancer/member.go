package balancer

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Member is one backend as the membership source describes it: a node
// whose role offers a balancer port.
type Member struct {
	Name   string
	Addr   netip.Addr
	Port   uint16
	Weight int // 0 means 1
	// Ready is false while the node's role target is not active; a member
	// that stops being ready is drained.
	Ready bool
}

// Members is where the balancer learns its members: the controller
// implements it from the cluster's nodes, roles and agent reports.
// Changed is signalled (never closed while in use) after Members would
// return something new.
type Members interface {
	Members() []Member
	Changed() <-chan struct{}
}

// Member health states.
const (
	statePending  int32 = iota // waiting for its first passing active check
	stateUp                    // taking requests
	stateDown                  // active checks failing
	stateDraining              // no new requests; in-flight ones finish
	stateRemoved               // gone from the membership
)

var stateNames = [...]string{"pending", "up", "down", "draining", "removed"}

// backend is a member at run time.
type backend struct {
	Member
	dial string // "addr:port"

	weight   atomic.Int64 // Member.Weight, changeable in place
	state    atomic.Int32
	inflight atomic.Int64 // requests or TCP sessions in progress
	requests atomic.Uint64
	errors   atomic.Uint64
	codes    [600]atomic.Uint64
	failures [numFailKinds]atomic.Uint64
	latency  latencyHist

	// Passive ejection: after consecutive failures the member sits out
	// until ejectUntil (unix nanoseconds), for a backoff that doubles on
	// every ejection and resets on success.
	consecFails atomic.Int32
	consec5xx   atomic.Int32
	ejectUntil  atomic.Int64
	ejections   atomic.Uint64
	backoffMu   sync.Mutex
	backoff     time.Duration

	// Idle keep-alive connections, most recently used last.
	poolMu sync.Mutex
	idle   []*memberConn
	closed bool

	// Smooth weighted round-robin state (guarded by the policy's lock).
	rrCurrent int

	stopHealth context.CancelFunc
	drained    chan struct{} // closed when inflight reaches zero while draining
}

func newBackend(m Member) *backend {
	if m.Weight <= 0 {
		m.Weight = 1
	}
	b := &backend{Member: m, dial: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))}
	b.weight.Store(int64(m.Weight))
	return b
}

func (b *backend) usable(now int64) bool {
	return b.state.Load() == stateUp && b.ejectUntil.Load() <= now
}

// memberConn is a pooled keep-alive connection to a member.
type memberConn struct {
	c        *net.TCPConn
	br       *bufio.Reader
	idleFrom int64 // unix nanoseconds when it went idle
}

// getConn returns an idle pooled connection or dials a new one.
// reused says which, since a reused connection may have been closed by the
// member in the meantime.
func (b *backend) getConn(d *net.Dialer, maxIdle time.Duration, now int64) (mc *memberConn, reused bool, err error) {
	b.poolMu.Lock()
	for len(b.idle) > 0 {
		mc = b.idle[len(b.idle)-1]
		b.idle[len(b.idle)-1] = nil
		b.idle = b.idle[:len(b.idle)-1]
		if now-mc.idleFrom < int64(maxIdle) {
			b.poolMu.Unlock()
			return mc, true, nil
		}
		mc.c.Close()
	}
	b.poolMu.Unlock()
	c, err := d.Dial("tcp", b.dial)
	if err != nil {
		return nil, false, err
	}
	tc := c.(*net.TCPConn)
	return &memberConn{c: tc, br: bufio.NewReaderSize(tc, 4096)}, false, nil
}

// putConn returns a connection whose last response was read completely.
func (b *backend) putConn(mc *memberConn, maxIdleConns int, now int64) {
	b.poolMu.Lock()
	if b.closed || len(b.idle) >= maxIdleConns || b.state.Load() >= stateDraining {
		b.poolMu.Unlock()
		mc.c.Close()
		return
	}
	mc.idleFrom = now
	b.idle = append(b.idle, mc)
	b.poolMu.Unlock()
}

// closeIdle closes every pooled connection; closeForever also refuses
// future ones.
func (b *backend) closeIdle(closeForever bool) {
	b.poolMu.Lock()
	idle := b.idle
	b.idle = nil
	if closeForever {
		b.closed = true
	}
	b.poolMu.Unlock()
	for _, mc := range idle {
		mc.c.Close()
	}
}

// closeStale closes connections idle for longer than maxIdle.
func (b *backend) closeStale(maxIdle time.Duration, now int64) {
	b.poolMu.Lock()
	keep := b.idle[:0]
	var stale []*memberConn
	for _, mc := range b.idle {
		if now-mc.idleFrom >= int64(maxIdle) {
			stale = append(stale, mc)
		} else {
			keep = append(keep, mc)
		}
	}
	for i := len(keep); i < len(b.idle); i++ {
		b.idle[i] = nil
	}
	b.idle = keep
	b.poolMu.Unlock()
	for _, mc := range stale {
		mc.c.Close()
	}
}

func (b *backend) idleCount() int {
	b.poolMu.Lock()
	defer b.poolMu.Unlock()
	return len(b.idle)
}

// done ends one request or session on this member.
func (b *backend) done() {
	if b.inflight.Add(-1) == 0 && b.state.Load() >= stateDraining {
		b.signalDrained()
	}
}

// undrain forgets a finished or abandoned drain so the next one waits
// again, and stops the health checks a restart replaces.
func (b *backend) undrain() {
	b.backoffMu.Lock()
	b.drained = nil
	b.backoffMu.Unlock()
	if b.stopHealth != nil {
		b.stopHealth()
		b.stopHealth = nil
	}
	b.poolMu.Lock()
	b.closed = false
	b.poolMu.Unlock()
}

func (b *backend) signalDrained() {
	b.backoffMu.Lock()
	if b.drained != nil {
		select {
		case <-b.drained:
		default:
			close(b.drained)
		}
	}
	b.backoffMu.Unlock()
}

// Failure kinds counted per member (the "kind" label).
const (
	failConnect  = iota // dial failed
	failReset           // connection reset or closed before a response
	failTimeout         // no response head in time
	failProtocol        // malformed response
	fail5xx             // counted towards a 5xx burst
	failHealth          // an active check failed
	numFailKinds
)

var failNames = [numFailKinds]string{"connect", "reset", "timeout", "protocol", "5xx", "check"}

// passive applies the passive health rules to one outcome.
type passiveConfig struct {
	failures int           // consecutive connect errors/resets before ejection
	burst5xx int           // consecutive 5xx responses before ejection
	base     time.Duration // first ejection
	max      time.Duration // longest ejection
}

func (b *backend) recordFailure(kind int, pc passiveConfig, now int64) {
	b.failures[kind].Add(1)
	var n, limit int32
	if kind == fail5xx {
		n, limit = b.consec5xx.Add(1), int32(pc.burst5xx)
	} else {
		b.errors.Add(1)
		n, limit = b.consecFails.Add(1), int32(pc.failures)
	}
	if limit <= 0 || n < limit {
		return
	}
	b.backoffMu.Lock()
	if b.ejectUntil.Load() > now {
		b.backoffMu.Unlock()
		return // already out
	}
	if b.backoff == 0 {
		b.backoff = pc.base
	} else if b.backoff *= 2; b.backoff > pc.max {
		b.backoff = pc.max
	}
	b.ejectUntil.Store(now + int64(b.backoff))
	b.backoffMu.Unlock()
	b.consecFails.Store(0)
	b.consec5xx.Store(0)
	b.ejections.Add(1)
	// Pooled connections to a member that resets are likely dead too.
	b.closeIdle(false)
}

func (b *backend) recordSuccess(status int) {
	if status < 500 {
		if b.consec5xx.Load() != 0 {
			b.consec5xx.Store(0)
		}
	}
	if b.consecFails.Load() != 0 {
		b.consecFails.Store(0)
	}
	if b.ejections.Load() != 0 && b.ejectUntil.Load() != 0 {
		b.backoffMu.Lock()
		b.backoff = 0
		b.ejectUntil.Store(0)
		b.backoffMu.Unlock()
	}
}
