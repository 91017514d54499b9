package nfsd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/pictl/pictl/internal/connlimit"
	"github.com/prometheus/client_golang/prometheus"
)

// connGuard holds what protects the server from its clients: the bounds on
// connections (connlimit), the budget of record memory, and the counters of
// everything refused or contained. Only the connection and record layer
// uses it; the procedures never see it.
type connGuard struct {
	log     *slog.Logger
	records *recordBudget
	timeout time.Duration
	limits  connlimit.Config
	closed  *prometheus.CounterVec
	panics  *prometheus.CounterVec
	garbage prometheus.Counter
}

// Defaults of the guard's Config fields.
const (
	DefaultRecordMemory = 128 << 20
)

const (
	reasonRecordMemory   = "record_memory"
	reasonRecordTooLarge = "record_too_large"
	reasonRecordTimeout  = "record_timeout"
	reasonMalformedCall  = "malformed_call"
)

func (c *Config) recordMemory() int64 {
	if c.RecordMemory <= 0 {
		return DefaultRecordMemory
	}
	return c.RecordMemory
}

func newConnGuard(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*connGuard, error) {
	g := &connGuard{
		log:     log,
		records: &recordBudget{max: cfg.recordMemory()},
		timeout: cfg.RecordTimeout,
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "connections_refused_total",
			Help: "Client connections nfsd closed itself, by reason (per_client_limit, total_limit, unproven_timeout, record_memory, record_too_large, record_timeout, malformed_call; accept_error counts failed accepts, retried).",
		}, []string{"reason"}),
		garbage: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "garbage_args_total",
			Help: "Calls answered GARBAGE_ARGS because a length field in their arguments does not fit the record or the protocol's bound.",
		}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "panics_total",
			Help: "Requests whose handling panicked (the connection was closed, the server kept serving), by where.",
		}, []string{"where"}),
	}
	g.limits = connlimit.Config{
		MaxConns:        cfg.MaxConns,
		MaxPerClient:    cfg.MaxConnsPerClient,
		UnprovenTimeout: cfg.UnprovenTimeout,
		OnClose:         g.refused,
	}
	for _, r := range []string{connlimit.ReasonPerClient, connlimit.ReasonTotal, connlimit.ReasonUnproven, connlimit.ReasonAcceptError, reasonRecordMemory, reasonRecordTooLarge, reasonRecordTimeout, reasonMalformedCall} {
		g.closed.WithLabelValues(r)
	}
	if reg != nil {
		inUse := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "record_bytes",
			Help: "Bytes of RPC records read and not yet handled, over all connections (bounded by Config.RecordMemory).",
		}, func() float64 { return float64(g.records.inUse()) })
		for _, c := range []prometheus.Collector{g.closed, g.panics, g.garbage, inUse} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("nfsd: register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// listen wraps the listening socket in the connection bounds.
func (g *connGuard) listen(ln net.Listener) *connlimit.Listener {
	return connlimit.Listen(ln, g.limits)
}

func (g *connGuard) recordTimeout() time.Duration {
	switch {
	case g == nil:
		return 0
	case g.timeout <= 0:
		return DefaultRecordTimeout
	}
	return g.timeout
}

func (g *connGuard) budget() *recordBudget {
	if g == nil {
		return nil
	}
	return g.records
}

func (g *connGuard) refused(reason string) {
	if g == nil {
		return
	}
	g.closed.WithLabelValues(reason).Inc()
	g.log.Debug("nfs connection refused", "reason", reason)
}

// refusedCall counts a record admitGoNFS kept from go-nfs.
func (g *connGuard) refusedCall(c net.Conn, a admit) {
	if g == nil {
		return
	}
	if a == admitGarbage {
		g.garbage.Inc()
		g.log.Debug("nfs call with malformed arguments: GARBAGE_ARGS", "client", c.RemoteAddr().String())
		return
	}
	g.refused(reasonMalformedCall)
	g.log.Info("nfs connection closed: malformed RPC call", "client", c.RemoteAddr().String())
}

// readFailed counts a connection the record reader gave up on.
func (g *connGuard) readFailed(c net.Conn, err error) {
	switch {
	case errors.Is(err, errRecordMemory):
		g.refused(reasonRecordMemory)
	case errors.Is(err, errRecordTooLarge):
		g.refused(reasonRecordTooLarge)
	case errors.Is(err, errRecordTimeout):
		g.refused(reasonRecordTimeout)
	default:
		return
	}
	if g != nil {
		g.log.Info("nfs connection closed", "client", c.RemoteAddr().String(), "err", err)
	}
}

// recordSeen proves a connection once it sent a well-formed NFSv3 or MOUNT
// call: only then does it outlive the unproven timeout.
func (g *connGuard) recordSeen(c net.Conn, rec []byte) {
	p, ok := c.(interface {
		Prove()
		Touch()
	})
	if !ok {
		return
	}
	if isRPCCall(rec) {
		p.Prove()
	} else {
		p.Touch()
	}
}

// isRPCCall: rec (with its record mark) is a call to NFS v3 or MOUNT v1-3.
func isRPCCall(rec []byte) bool {
	if len(rec) < 28 {
		return false
	}
	word := func(i int) uint32 {
		return uint32(rec[i])<<24 | uint32(rec[i+1])<<16 | uint32(rec[i+2])<<8 | uint32(rec[i+3])
	}
	if word(8) != 0 || word(12) != 2 {
		return false
	}
	switch prog, vers := word(16), word(20); prog {
	case nfsProgram:
		return vers == 3
	case mountProgram:
		return vers >= 1 && vers <= 3
	}
	return false
}

const mountProgram = 100005

// panicked logs and counts a panic contained to one request.
func (g *connGuard) panicked(where string, c net.Conn, v any) {
	if g == nil {
		return
	}
	g.panics.WithLabelValues(where).Inc()
	client := ""
	if c != nil {
		client = c.RemoteAddr().String()
	}
	g.log.Error("nfs request panicked; connection closed, server goes on", "where", where, "client", client, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

// Prove and Touch pass the record layer's verdict to the connection bounds.
func (c *trackedConn) Prove() {
	if p, ok := c.Conn.(*connlimit.Conn); ok {
		p.Prove()
	}
}

func (c *trackedConn) Touch() {
	if p, ok := c.Conn.(*connlimit.Conn); ok {
		p.Touch()
	}
}
