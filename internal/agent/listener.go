package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Coordinator is the controller side of the protocol.
type Coordinator interface {
	// Desired is the node's desired state and a channel closed when it
	// changes; ok is false for a node the controller does not know.
	Desired(node string) (d Desired, changed <-chan struct{}, ok bool)
	// Report records what the node's agent says.
	Report(node string, r Report)
	// PollStarted and PollEnded follow the agent's long polls, which is
	// how the controller knows an agent is still there: a live agent
	// always has one open except while it switches. answered is false
	// when the connection died (the node went away) before the answer.
	PollStarted(node string)
	PollEnded(node string, answered bool)
}

// Listener serves the agents on a port of its own: it accepts only node
// credentials (NodeToken), never the admin API's token.
type Listener struct {
	Addr        string
	Secret      []byte
	Coordinator Coordinator
	Log         *slog.Logger
	// MaxWait caps a long poll (the agent asks for less). Default 60s.
	MaxWait time.Duration

	ln net.Listener
}

// Name makes the listener a controller component.
func (l *Listener) Name() string { return "agent-listener" }

// Listen opens the socket.
func (l *Listener) Listen() error {
	// Keepalive probes on every connection: a node that dies (power cut,
	// a killed guest) sends no FIN, so its open poll would make it look
	// present until the poll timed out; this way it is gone in ~20 s.
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3}}
	ln, err := lc.Listen(context.Background(), "tcp", l.Addr)
	if err != nil {
		return fmt.Errorf("agent listener: %w", err)
	}
	l.ln = ln
	return nil
}

// ListenAddr is where the listener accepts agents (after Listen).
func (l *Listener) ListenAddr() net.Addr {
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Run is Listen and Serve.
func (l *Listener) Run(ctx context.Context) error {
	if l.ln == nil {
		if err := l.Listen(); err != nil {
			return err
		}
	}
	return l.Serve(ctx)
}

// Serve answers agents until ctx ends.
func (l *Listener) Serve(ctx context.Context) error {
	hs := &http.Server{
		Handler:           l.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      l.maxWait() + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if l.Log != nil {
		hs.ErrorLog = slog.NewLogLogger(l.Log.Handler(), slog.LevelDebug)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("agent listener: %w", err)
	}
}

func (l *Listener) maxWait() time.Duration {
	if l.MaxWait <= 0 {
		return 60 * time.Second
	}
	return l.MaxWait
}

// Handler is the listener's routes:
//
//	GET  /v1/agent/{node}/desired?after=LAYER&wait=30s   long poll
//	POST /v1/agent/{node}/report                         a Report
func (l *Listener) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agent/{node}/desired", l.auth(l.desired))
	mux.HandleFunc("POST /v1/agent/{node}/report", l.auth(l.report))
	return mux
}

func (l *Listener) auth(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		node := r.PathValue("node")
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !validToken(l.Secret, node, tok) {
			httpError(w, http.StatusUnauthorized, "wrong or missing node token")
			return
		}
		h(w, r, node)
	}
}

func (l *Listener) desired(w http.ResponseWriter, r *http.Request, node string) {
	after := r.URL.Query().Get("after")
	wait := l.maxWait()
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			httpError(w, http.StatusBadRequest, "wait: want a duration such as 30s")
			return
		}
		wait = min(d, wait)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	l.Coordinator.PollStarted(node)
	answered := true
	defer func() { l.Coordinator.PollEnded(node, answered) }()
	for {
		d, changed, ok := l.Coordinator.Desired(node)
		if !ok {
			httpError(w, http.StatusNotFound, "no node "+node+" in cluster.yaml")
			return
		}
		if d.Layer != after || after == "" {
			writeJSON(w, d)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			writeJSON(w, d) // unchanged: the agent asks again
			return
		case <-r.Context().Done():
			answered = false
			return
		}
	}
}

func (l *Listener) report(w http.ResponseWriter, r *http.Request, node string) {
	var rep Report
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&rep); err != nil {
		httpError(w, http.StatusBadRequest, "report: "+err.Error())
		return
	}
	switch rep.State {
	case StateSwitching, StateActive, StateFailed:
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("report: unknown state %q", rep.State))
		return
	}
	l.Coordinator.Report(node, rep)
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
