package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pictl/pictl/nfsd"

	"github.com/pictl/pictl/test/internal/ganesha"
	"github.com/pictl/pictl/test/internal/nfs3client"
)

// server is one NFS server under test, started fresh for every phase so
// each phase starts cold.
type server struct {
	name      string
	nfsAddr   string
	mountAddr string
	export    string
	cmd       func() *exec.Cmd
	cleanup   func() error // undo the untar phase's writes
	proc      *exec.Cmd
	logFile   string
}

func (s *server) start() error {
	s.proc = s.cmd()
	if s.logFile != "" {
		f, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		s.proc.Stdout, s.proc.Stderr = f, f
		defer f.Close()
	}
	if err := s.proc.Start(); err != nil {
		return fmt.Errorf("%s: start: %w", s.name, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range []string{s.nfsAddr, s.mountAddr} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				s.stop()
				return fmt.Errorf("%s: %s never accepted: %w", s.name, a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Ready means answering MOUNT, not only listening (ganesha listens
	// before its exports are loaded).
	for {
		c, err := nfs3client.Mount(s.nfsAddr, s.mountAddr, s.export)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("%s: mount never worked: %w", s.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) stop() {
	if s.proc == nil || s.proc.Process == nil {
		return
	}
	_ = s.proc.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.proc.Process.Kill()
		<-done
	}
	s.proc = nil
}

const (
	portGanesha      = 20490 // NFS; MOUNT on 20491
	portGaneshaMount = 20491
	portPictl        = 20492
	portOsnfs        = 20493
)

func hostPort(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }

func pictlServer(tree, work string) *server {
	state := filepath.Join(work, "pictl-state")
	self, _ := os.Executable()
	return &server{
		name: "pictl", nfsAddr: hostPort(portPictl), mountAddr: hostPort(portPictl), export: "/nodes/bench",
		logFile: filepath.Join(work, "pictl.log"),
		cmd: func() *exec.Cmd {
			_ = os.RemoveAll(state) // a new node: empty own layer, cold caches
			cmd := exec.Command(self, "serve-pictl", "-tree", tree, "-state", state, "-addr", hostPort(portPictl))
			cmd.Env = append(os.Environ(), "GOGC="+serverGOGC())
			if n := os.Getenv("PICTL_NFSBENCH_SERVER_GOMAXPROCS"); n != "" {
				cmd.Env = append(cmd.Env, "GOMAXPROCS="+n) // diagnosis: scheduler cost
			}
			return cmd
		},
		cleanup: func() error { return os.RemoveAll(state) },
	}
}

func osnfsServer(tree, bin, work string) *server {
	return &server{
		name: "osnfs", nfsAddr: hostPort(portOsnfs), mountAddr: hostPort(portOsnfs), export: "/",
		logFile: filepath.Join(work, "osnfs.log"),
		cmd:     func() *exec.Cmd { return exec.Command(bin, tree, fmt.Sprint(portOsnfs)) },
		cleanup: func() error { return removeWrites(tree) },
	}
}

func ganeshaServer(tree, work string) *server {
	conf := filepath.Join(work, "ganesha.conf")
	return &server{
		name: "ganesha", nfsAddr: hostPort(portGanesha), mountAddr: hostPort(portGaneshaMount), export: tree,
		logFile: filepath.Join(work, "ganesha.out"),
		cmd: func() *exec.Cmd {
			_ = os.WriteFile(conf, []byte(ganesha.Config(portGanesha, portGaneshaMount, tree, "/bench")), 0o644)
			return exec.Command("ganesha.nfsd", "-F", "-f", conf, "-L", filepath.Join(work, "ganesha.log"), "-p", filepath.Join(work, "ganesha.pid"))
		},
		cleanup: func() error { return removeWrites(tree) },
	}
}

// serverGOGC is the GC setting the pictl server runs with: Go's default,
// as pictl serve runs (READs no longer go through go-nfs's per-call
// buffers; GOGC=400, once recommended here, measured the same).
// PICTL_NFSBENCH_SERVER_GOGC overrides it.
func serverGOGC() string {
	if g := os.Getenv("PICTL_NFSBENCH_SERVER_GOGC"); g != "" {
		return g
	}
	return "100"
}

// servePictl is the "serve-pictl" subcommand: nfsd exporting the tree as
// the image of node "bench" (own layer empty at start), as pictl serve
// would, until SIGTERM.
func servePictl(tree, state, addr string) error {
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	if p := os.Getenv("PICTL_NFSBENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid()))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	db, err := bbolt.Open(filepath.Join(state, "runtime.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := nfsd.Config{Addr: addr, StateDir: state}
	if w, err := strconv.Atoi(os.Getenv("PICTL_NFSBENCH_WORKERS")); err == nil {
		cfg.ConnWorkers = w // diagnosis: compare with go-nfs's one-at-a-time
	}
	srv, err := nfsd.New(cfg, benchNodes{tree: tree}, nil, db, log, nil)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = srv.Serve(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// benchNodes: every address is node "bench".
type benchNodes struct{ tree string }

func (b benchNodes) ByAddr(netip.Addr) (nfsd.Node, bool) { return b.node(), true }

func (b benchNodes) ByName(name string) (nfsd.Node, bool) {
	if name != "bench" {
		return nfsd.Node{}, false
	}
	return b.node(), true
}

func (b benchNodes) node() nfsd.Node { return nfsd.Node{Name: "bench", ImageRoot: b.tree} }
