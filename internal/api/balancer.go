package api

import (
	"context"
	"errors"
	"net/http"
)

var errNoBalancer = errors.New("no balancer runs in this controller")

// Balancer is GET /v1/balancer: the built-in balancer and its members.
type Balancer struct {
	Listen       string `json:"listen" yaml:"listen"`                             // host:port it accepts on
	TLSListen    string `json:"tls_listen,omitempty" yaml:"tls_listen,omitempty"` // the TLS listener (HTTP/2, HTTP/1.1), if any
	Role         string `json:"role" yaml:"role"`                                 // whose nodes are members
	Mode         string `json:"mode" yaml:"mode"`                                 // http or tcp
	Policy       string `json:"policy" yaml:"policy"`                             // least-conn or round-robin
	StickyCookie string `json:"sticky_cookie,omitempty" yaml:"sticky_cookie,omitempty"`
	// Check describes the active health check in force ("http GET / → 200
	// every 2s", "off").
	Check   string           `json:"check" yaml:"check"`
	Members []BalancerMember `json:"members" yaml:"members"`
}

// BalancerMember is one member (current, or draining after it left).
type BalancerMember struct {
	Node    string `json:"node" yaml:"node"`
	Address string `json:"address" yaml:"address"` // addr:port
	Weight  int    `json:"weight" yaml:"weight"`
	// State: pending (first check not passed), up, ejected (passive
	// backoff), down (checks failing), draining, removed (left, draining),
	// or "role switching|failed|not seen" (its agent does not report the
	// role active: out of rotation).
	State     string  `json:"state" yaml:"state"`
	InFlight  int64   `json:"in_flight" yaml:"in_flight"`
	Requests  uint64  `json:"requests" yaml:"requests"`
	Errors    uint64  `json:"errors" yaml:"errors"`
	Ejections uint64  `json:"ejections" yaml:"ejections"`
	P50       float64 `json:"p50_seconds" yaml:"p50_seconds"`
	P99       float64 `json:"p99_seconds" yaml:"p99_seconds"`
}

// BalancerBackend is implemented by backends that run a balancer; ok is
// false when none runs.
type BalancerBackend interface {
	Balancer(ctx context.Context) (Balancer, bool)
}

func (s *Server) routeBalancer(b Backend) {
	s.mux.HandleFunc("GET /v1/balancer", func(w http.ResponseWriter, r *http.Request) {
		bb, ok := b.(BalancerBackend)
		var st Balancer
		if ok {
			st, ok = bb.Balancer(r.Context())
		}
		if !ok {
			writeError(w, http.StatusNotFound, errNoBalancer)
			return
		}
		if st.Members == nil {
			st.Members = []BalancerMember{}
		}
		writeJSON(w, http.StatusOK, st)
	})
}

// Balancer asks for the balancer's members.
func (c *Client) Balancer(ctx context.Context) (Balancer, error) {
	var b Balancer
	err := c.get(ctx, "/v1/balancer", &b)
	return b, err
}
