package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"

	"github.com/pictl/pictl/internal/connlimit"
	"github.com/prometheus/client_golang/prometheus"
)

// The TCP API faces the network: its connections are bounded like nfsd's
// (internal/connlimit). A connection counts as proven once it carried an
// authenticated request; one that has not is closed UnprovenTimeout after
// it was accepted (default 10 s), so keep-alive connections left open
// after a 401 cannot pile up. The unix socket has no such bounds: only
// root and the socket's group can open it, and it must keep answering
// while the TCP side is flooded.

// Defaults of the TCP API's bounds (Server.Limits zero values).
const (
	DefaultMaxConns        = 256
	DefaultMaxConnsPerHost = 16
)

type connKey struct{}

func (s *Server) limitTCP() net.Listener {
	l := connlimit.Listen(s.tcp, s.tcpLimits())
	s.tcpLim.Store(l)
	return l
}

// TCPConns is the number of open TCP API connections.
func (s *Server) TCPConns() int {
	if l := s.tcpLim.Load(); l != nil {
		return l.Open()
	}
	return 0
}

func (s *Server) tcpLimits() connlimit.Config {
	l := s.Limits
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxPerClient <= 0 {
		l.MaxPerClient = DefaultMaxConnsPerHost
	}
	l.OnClose = func(reason string) {
		s.metrics.refused.WithLabelValues(reason).Inc()
		if s.Limits.OnClose != nil {
			s.Limits.OnClose(reason)
		}
	}
	return l
}

// trackConn lets handlers reach the connection (see proveConn).
func trackConn(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*connlimit.Conn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// connState marks connections busy while a request is in progress: an
// eviction takes idle ones first.
func connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*connlimit.Conn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		lc.SetBusy(true)
	case http.StateIdle:
		lc.SetBusy(false)
	}
}

// proveConn: the request was authenticated.
func proveConn(r *http.Request) {
	if lc, ok := r.Context().Value(connKey{}).(*connlimit.Conn); ok {
		lc.Prove()
	}
}

type apiMetrics struct {
	refused *prometheus.CounterVec
	panics  prometheus.Counter
}

func newAPIMetrics() *apiMetrics {
	return &apiMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "api", Name: "connections_refused_total",
			Help: "TCP API connections closed by the API itself, by reason (per_client_limit, total_limit, unproven_timeout; accept_error counts failed accepts, retried).",
		}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "api", Name: "panics_total",
			Help: "API requests whose handler panicked (answered 500, the server kept serving).",
		}),
	}
}

// Register adds the API's metrics to reg.
func (s *Server) Register(reg prometheus.Registerer) error {
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "pictl", Subsystem: "api", Name: "tcp_connections",
		Help: "Open TCP API connections.",
	}, func() float64 { return float64(s.TCPConns()) })
	for _, c := range []prometheus.Collector{s.metrics.refused, s.metrics.panics, open} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("api: register metrics: %w", err)
		}
	}
	return nil
}

// recoverPanics answers 500 for a handler that panicked, logs and counts
// it (net/http would log it and drop the connection, uncounted).
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			s.metrics.panics.Inc()
			s.Log.Error("api request panicked; answered 500, server goes on", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, fmt.Errorf("internal error"))
		}()
		next.ServeHTTP(w, r)
	})
}
