// Package controller wires pictl's servers together: it owns the current
// cluster state, reloads it when cluster.yaml changes, runs every component
// under one errgroup and answers the runtime API.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/store"
)

// Config says where the controller's state lives.
type Config struct {
	Store   *store.Store
	Version string
	Log     *slog.Logger
	// SocketPath overrides cluster.yaml's controller.api_socket (tests).
	SocketPath string
}

// Controller holds the current desired state and the runtime database.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	db      *bbolt.DB

	current atomic.Pointer[cluster.Cluster]
	metrics *prometheus.Registry
	api     *api.Server

	// dir answers the servers' node lookups, when AddServers built them.
	dir *nodeDirectory
	// roleCatalog loads the role definitions (built-ins and the user's
	// directory); nil: no role layers, no agent listener.
	roleCatalog func(userDir string) (roleRenderer, error)

	mu         sync.Mutex // guards the fields below
	generation uint64
	loadedAt   time.Time
	reloadErr  error
	components []Component
	states     map[string]api.ComponentStatus
}

// New loads cluster.yaml (an invalid file is an error here: there is no
// last good state yet) and opens the runtime database in the state dir.
func New(cfg Config) (*Controller, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cl, err := cfg.Store.Load()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cl.Controller.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	db, dbPath, err := OpenRuntimeDB(cl.Controller.StateDir)
	if err != nil {
		return nil, fmt.Errorf("runtime database %s (is another controller using this state dir?): %w", dbPath, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c := &Controller{
		cfg:     cfg,
		log:     cfg.Log,
		started: time.Now(),
		db:      db,
		metrics: reg,
		states:  map[string]api.ComponentStatus{},

		roleCatalog: loadRoleCatalog,
	}
	c.current.Store(cl)
	c.generation, c.loadedAt = 1, time.Now()
	return c, nil
}

// Cluster is the state in force now. Components call it per request.
func (c *Controller) Cluster() *cluster.Cluster { return c.current.Load() }

// DB is the runtime database components keep their buckets in.
func (c *Controller) DB() *bbolt.DB { return c.db }

// Register adds a component; call before Run.
func (c *Controller) Register(comp Component) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.components = append(c.components, comp)
	c.states[comp.Name()] = api.ComponentStatus{Name: comp.Name(), State: "starting"}
}

// Listen opens every socket: the API's and each server's. It runs in the
// calling thread's network namespace, so a test can call it inside one.
// Run calls it when nobody did.
func (c *Controller) Listen() error {
	if c.api != nil {
		return nil
	}
	socket := c.cfg.SocketPath
	if socket == "" {
		socket = c.Cluster().Controller.APISocket
	}
	srv := api.NewServer(socket, c, c.log.With("component", "api"))
	srv.Handle("GET /metrics", promhttp.HandlerFor(c.metrics, promhttp.HandlerOpts{}))
	if err := srv.Register(c.metrics); err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if err := c.listenTCP(srv); err != nil {
		srv.Close()
		return err
	}
	c.mu.Lock()
	comps := slices.Clone(c.components)
	c.mu.Unlock()
	for _, comp := range comps {
		if ls, ok := comp.(listenServer); ok {
			if err := ls.Listen(); err != nil {
				srv.Close()
				return fmt.Errorf("%s: %w", comp.Name(), err)
			}
		}
	}
	c.api = srv
	return nil
}

// Run serves until ctx ends (SIGINT/SIGTERM in `pictl serve`). SIGHUP
// re-reads cluster.yaml; so does any change to the file.
func (c *Controller) Run(ctx context.Context) error {
	defer c.db.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return c.cfg.Store.Watch(ctx, func(cl *cluster.Cluster, err error) { c.apply(ctx, cl, err) })
	})
	g.Go(func() error { c.handleHangup(ctx); return nil })

	c.mu.Lock()
	comps := slices.Clone(c.components)
	c.mu.Unlock()
	for _, comp := range comps {
		// "running" before the API answers: its sockets are open since
		// Listen, and a client asking right away must not see "starting".
		c.setState(comp.Name(), "running", nil)
		g.Go(func() error {
			// One component's failure (an error, or a panic on its
			// own goroutine) is reported and leaves the others
			// serving: a broken NFS server must not take DHCP, TFTP
			// and the API down with it.
			err := runComponent(ctx, comp)
			if err != nil && ctx.Err() == nil {
				c.setState(comp.Name(), "failed", err)
				c.log.Error("component failed; the others keep running", "component", comp.Name(), "err", err)
				return nil
			}
			c.setState(comp.Name(), "stopped", nil)
			return nil
		})
	}

	c.setState("api", "running", nil)
	g.Go(func() error { return c.api.Serve(ctx) })
	c.notify(daemon.SdNotifyReady, c.statusLine())
	c.log.Info("controller ready", "config", c.cfg.Store.Path(), "socket", c.api.SocketPath, "nodes", len(c.Cluster().Nodes))
	if u := c.StatusURL(); u != "" {
		// The token itself stays out of logs, which travel further than
		// the 0600 file it lives in.
		c.log.Info("status page: "+u+" — token: `pictl api token`", "listen", c.api.TCPAddr().String())
	} else {
		c.log.Info("status page only on the API socket; set ports.api in cluster.yaml to serve it on the network", "socket", c.api.SocketPath)
	}
	g.Go(func() error { c.watchdog(ctx); return nil })

	err := g.Wait()
	c.setState("api", "stopped", nil)
	c.notify(daemon.SdNotifyStopping)
	return err
}

// runComponent serves comp until ctx ends; a panic on the calling goroutine
// becomes an error.
func runComponent(ctx context.Context, comp Component) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
		}
	}()
	if ls, ok := comp.(listenServer); ok {
		return ls.Serve(ctx) // Listen already opened its sockets
	}
	return comp.Run(ctx)
}

// handleHangup reloads on SIGHUP. The channel is local to this controller,
// so two controllers in one process (tests) do not steal each other's signals.
func (c *Controller) handleHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			c.log.Info("SIGHUP: reloading", "config", c.cfg.Store.Path())
			cl, err := c.cfg.Store.Load()
			c.apply(ctx, cl, err)
		}
	}
}

// apply installs a newly loaded state, or keeps the last good one when the
// new file is invalid.
func (c *Controller) apply(ctx context.Context, cl *cluster.Cluster, loadErr error) {
	c.mu.Lock()
	if loadErr != nil {
		c.reloadErr = loadErr
		c.mu.Unlock()
		c.log.Error("cluster.yaml rejected; keeping the last good state", "err", loadErr)
		c.notify("STATUS=cluster.yaml invalid, running last good state: " + firstLine(loadErr.Error()))
		return
	}
	c.current.Store(cl)
	c.generation++
	c.loadedAt = time.Now()
	c.reloadErr = nil
	gen := c.generation
	comps := slices.Clone(c.components)
	c.mu.Unlock()

	c.log.Info("cluster.yaml reloaded", "generation", gen, "nodes", len(cl.Nodes))
	c.warnAPIPort(cl)
	if c.dir != nil {
		c.dir.reload()
	}
	for _, comp := range comps {
		if r, ok := comp.(Reloader); ok {
			if err := r.Reload(ctx, cl); err != nil {
				c.log.Error("component reload failed", "component", comp.Name(), "err", err)
			}
		}
	}
	c.notify(c.statusLine())
}

func (c *Controller) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.notify(daemon.SdNotifyWatchdog)
		}
	}
}

// notify tells systemd about our state; outside systemd it does nothing.
func (c *Controller) notify(states ...string) {
	for _, s := range states {
		if _, err := daemon.SdNotify(false, s); err != nil {
			c.log.Debug("sd_notify failed", "state", s, "err", err)
		}
	}
}

func (c *Controller) statusLine() string {
	return fmt.Sprintf("STATUS=serving %d nodes", len(c.Cluster().Nodes))
}

func (c *Controller) setState(name, state string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := api.ComponentStatus{Name: name, State: state}
	if err != nil {
		s.Error = err.Error()
	}
	c.states[name] = s
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
