package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/controller"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the controller: DHCP, TFTP, NFS roots, the web balancer and the API, following cluster.yaml",
		Description: `Runs in the foreground until SIGINT or SIGTERM. Changes to cluster.yaml (by hand
or through pictl commands) apply within a second; SIGHUP forces a re-read. An
invalid cluster.yaml is reported and the last good state stays in force.
The API answers on controller.api_socket; with ports.api set also on that TCP
port (every address), where each request needs the token (pictl api token) and
a browser finds the status page at http://ADDRESS:PORT/ — the log says where.
The balancer listens on ports.balancer (80, every address) in front of the
nodes of balancer.role (web) whose role is active and healthy; pictl lb status
lists them.
Under systemd use Type=notify (see cmd/pictl/pictl.service in the repository).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info", EnvVars: []string{"PICTL_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Usage: "text or json", Value: "text"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile (go tool pprof) to this file until the controller stops", Hidden: true},
		},
		Action: serve,
	}
}

func serve(c *cli.Context) error {
	log, err := newLogger(c.App.ErrWriter, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return err
	}
	if _, err := raiseNOFILE(log); err != nil {
		log.Warn("serve: keeping the open-files limit", "err", err)
	}
	if path := c.String("cpuprofile"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer stop()
	}
	ctl, err := controller.New(controller.Config{
		Store:      storeFor(c),
		Version:    buildVersion(),
		Log:        log,
		SocketPath: c.String("socket"),
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := ctl.AddServers(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go newMemoryReturner(log).run(ctx, memoryCheckInterval)
	if err := ctl.Run(ctx); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("controller stopped")
	return nil
}

// startCPUProfile profiles the whole controller, for performance work on
// the servers under real load (the benchmarks run `pictl serve`).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func newLogger(w interface{ Write([]byte) (int, error) }, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}
