package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/pictl/pictl/internal/connlimit"
)

// Backend answers the API's questions; the controller implements it.
type Backend interface {
	Status(ctx context.Context) Status
	Nodes(ctx context.Context) ([]Node, error)
	Discovered(ctx context.Context) ([]Discovered, error)
	// ResetNode discards a node's own layer. Errors that say NotFound()
	// (no such node) or InUse() (the node looks mounted and force is
	// false) become 404 and 409; their text is meant for the person.
	ResetNode(ctx context.Context, name string, force bool) error
	// SwitchByReboot makes the node's next role change a reboot instead
	// of a live switch (pictl role set --reboot asks before it edits
	// cluster.yaml).
	SwitchByReboot(ctx context.Context, name string) error
}

// Server serves the API on a unix socket and, after ListenTCP, on a TCP
// port. Anyone who can open the socket (mode 0660: root and the socket's
// group) can use it, so the socket asks for no token; every TCP request
// must carry the token (see tokenAuth).
type Server struct {
	SocketPath string
	Backend    Backend
	Log        *slog.Logger
	// Limits bound the TCP listener's connections (limits.go); zero
	// values mean DefaultMaxConns, DefaultMaxConnsPerHost and connlimit's
	// 10 s for connections without an authenticated request.
	Limits connlimit.Config

	metrics *apiMetrics
	tcpLim  atomic.Pointer[connlimit.Listener]
	mux     *http.ServeMux
	ln      net.Listener
	tcp     net.Listener // nil: unix socket only
	guard   http.Handler // mux behind the token, for tcp
}

// NewServer builds the API's routes. Extra handlers (metrics) can be added
// with Handle before Serve.
func NewServer(socketPath string, b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{SocketPath: socketPath, Backend: b, Log: log, mux: http.NewServeMux(), metrics: newAPIMetrics()}
	s.mux.Handle("GET /{$}", statusPage(b))
	s.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status(r.Context()))
	})
	s.mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		nodes, err := b.Nodes(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, nodes)
	})
	s.mux.HandleFunc("GET /v1/discovered", func(w http.ResponseWriter, r *http.Request) {
		list, err := b.Discovered(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		if list == nil {
			list = []Discovered{}
		}
		writeJSON(w, http.StatusOK, list)
	})
	s.mux.HandleFunc("POST /v1/nodes/{name}/reset", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		force, err := boolParam(r, "force")
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := b.ResetNode(r.Context(), name, force); err != nil {
			writeError(w, errorStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, Reset{Node: name, Forced: force})
	})
	s.mux.HandleFunc("POST /v1/nodes/{name}/switch-by-reboot", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := b.SwitchByReboot(r.Context(), name); err != nil {
			writeError(w, errorStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"node": name})
	})
	s.routeQuarantine(b)
	s.routeBalancer(b)
	return s
}

// Handle adds a route, e.g. "GET /metrics".
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Listen creates the socket, replacing a stale one left by a killed
// controller but refusing to take over one a live controller answers on.
func (s *Server) Listen() error {
	if err := os.MkdirAll(filepath.Dir(s.SocketPath), 0o755); err != nil {
		return fmt.Errorf("api socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", s.SocketPath, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("api socket %s: another pictl controller is running", s.SocketPath)
	}
	// Only a socket (a stale one) is ever removed: api_socket pointing at
	// a file by mistake must not delete it.
	if fi, err := os.Lstat(s.SocketPath); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("api socket %s exists and is not a socket (%s); refusing to replace it: fix controller.api_socket", s.SocketPath, describeMode(fi.Mode()))
		}
		if err := os.Remove(s.SocketPath); err != nil {
			return fmt.Errorf("api socket: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", s.SocketPath)
	if err != nil {
		return fmt.Errorf("api socket: %w", err)
	}
	if err := os.Chmod(s.SocketPath, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("api socket mode: %w", err)
	}
	s.ln = ln
	return nil
}

// removeSocket removes the socket at SocketPath, and nothing else.
func (s *Server) removeSocket() {
	if fi, err := os.Lstat(s.SocketPath); err == nil && fi.Mode().Type() == fs.ModeSocket {
		_ = os.Remove(s.SocketPath)
	}
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "mode " + m.Type().String()
}

// ListenTCP opens the authenticated TCP listener (addr like ":8080").
// Call it after Listen, before Serve.
func (s *Server) ListenTCP(addr, token string) error {
	if len(token) < 32 {
		return errors.New("api: refusing a TCP listener with a short or empty token")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api port: %w", err)
	}
	s.tcp, s.guard = ln, newTokenAuth(token, s.mux)
	return nil
}

// TCPAddr is the TCP listener's address, nil without one.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// Handler is what the unix socket serves: every route, no token.
func (s *Server) Handler() http.Handler { return s.mux }

// TCPHandler is what the TCP port serves: every route behind the token.
// Before ListenTCP it refuses everything (there is no token to compare).
func (s *Server) TCPHandler() http.Handler {
	if s.guard == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			unauthorized(w, "this pictl API has no token configured")
		})
	}
	return s.guard
}

// Close gives up the sockets of a server that will not Serve.
func (s *Server) Close() {
	if s.ln != nil {
		s.ln.Close()
		s.removeSocket()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}

// Serve answers requests until ctx ends, then removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	servers := []struct {
		hs *http.Server
		ln net.Listener
	}{{&http.Server{Handler: s.recoverPanics(s.mux), ReadHeaderTimeout: 5 * time.Second}, s.ln}}
	if s.tcp != nil {
		// The network may hold slow or hostile clients: bound every phase.
		servers = append(servers, struct {
			hs *http.Server
			ln net.Listener
		}{&http.Server{
			Handler:           s.recoverPanics(s.TCPHandler()),
			ConnContext:       trackConn,
			ConnState:         connState,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      5 * time.Minute, // a reset may remove a large layer
			IdleTimeout:       2 * time.Minute, // authenticated clients only: see limits.go
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
		}, s.limitTCP()})
	}
	errc := make(chan error, len(servers))
	for _, sv := range servers {
		go func() { errc <- sv.hs.Serve(sv.ln) }()
	}
	var first error
	pending := len(servers)
	select {
	case <-ctx.Done():
	case first = <-errc: // a listener failed: stop the others too
		pending--
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, sv := range servers {
		_ = sv.hs.Shutdown(shutdownCtx)
	}
	for ; pending > 0; pending-- {
		if err := <-errc; first == nil && !errors.Is(err, http.ErrServerClosed) {
			first = err
		}
	}
	s.removeSocket()
	if first == nil || errors.Is(first, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("api: %w", first)
}

// boolParam reads an optional query flag: absent, "", "0", "false" are
// false; "1", "true" (and a bare "?force") are true.
func boolParam(r *http.Request, key string) (bool, error) {
	q := r.URL.Query()
	if !q.Has(key) {
		return false, nil
	}
	switch q.Get(key) {
	case "", "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("query parameter %s=%q: use 1 or 0", key, q.Get(key))
}

// errorStatus maps the backend's behavioural errors to HTTP codes.
func errorStatus(err error) int {
	var nf interface{ NotFound() bool }
	if errors.As(err, &nf) && nf.NotFound() {
		return http.StatusNotFound
	}
	var iu interface{ InUse() bool }
	if errors.As(err, &iu) && iu.InUse() {
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
