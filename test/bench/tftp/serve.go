package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/pin/tftp/v3"

	"github.com/pictl/pictl/tftpd"
)

// anyClient answers every lookup with the one benchmark node, so every
// request is served from the benchmark's directory as pictl serves a node's
// image boot directory (full path: cleaning, routing, os.Root, cache).
type anyClient struct{ node tftpd.Node }

func (a anyClient) LookupNode(context.Context, tftpd.NodeKey) (tftpd.Node, bool, error) {
	return a.node, true, nil
}

// servePictl runs pictl's tftpd inside the server namespace (the parent
// started it with `ip netns exec`) until SIGINT.
func servePictl(args []string) {
	fs := flag.NewFlagSet("serve-pictl", flag.ExitOnError)
	dir := fs.String("dir", "", "boot directory")
	addr := fs.String("addr", ":6969", "listen address")
	cache := fs.Bool("cache", true, "keep boot files in memory")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here")
	debug := fs.Bool("debug", false, "log every transfer")
	windowClients := fs.String("window-clients", "", "comma-separated prefixes sent windowed (tftpd.Config.WindowClients)")
	fs.Parse(args)

	level := slog.LevelWarn
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := tftpd.Config{Addr: *addr}
	if !*cache {
		cfg.CacheBytes = -1
	}
	for _, p := range strings.Split(*windowClients, ",") {
		if p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			log.Fatal(err)
		}
		cfg.WindowClients = append(cfg.WindowClients, prefix)
	}
	node := tftpd.Node{Name: "bench", Netboot: true, Image: tftpd.Image{Name: "bench", Kind: tftpd.ImagePi, BootDir: *dir}}
	srv, err := tftpd.New(cfg, anyClient{node}, nil, logger, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		log.Fatal(err)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Serve(ctx); err != nil {
		log.Print(err)
	}
}

// serveBare is pin/tftp used the plain way, as the "bare pin/tftp"
// figure: open the file per request and hand it to ReadFrom (tsize from
// Seek), default timeout and backoff. A reference, not a product path.
func serveBare(args []string) {
	fs := flag.NewFlagSet("serve-bare", flag.ExitOnError)
	dir := fs.String("dir", "", "directory")
	addr := fs.String("addr", ":6970", "listen address")
	fs.Parse(args)
	root, err := os.OpenRoot(*dir)
	if err != nil {
		log.Fatal(err)
	}
	srv := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		f, err := root.Open(name)
		if err != nil {
			return errors.New("file not found")
		}
		defer f.Close()
		_, err = rf.ReadFrom(f)
		return err
	}, nil)
	srv.SetBlockSize(1468)
	conn, err := net.ListenPacket("udp4", *addr)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Shutdown() }()
	srv.Serve(conn)
}
