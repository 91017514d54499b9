package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/testcache"
)

// BuildPictl compiles cmd/pictl into dir and returns the binary's path.
func BuildPictl(ctx context.Context, dir string) (string, error) {
	root, err := testcache.ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "pictl")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/pictl")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pictl: %w\n%s", err, b)
	}
	return out, nil
}

// Controller is one pictl installation: a cluster.yaml, a state directory
// and an API socket in Dir, and — after Serve — a `pictl serve` process
// inside a network namespace.
type Controller struct {
	Bin      string // the pictl binary
	Dir      string // holds cluster.yaml, state/, pictl.sock, serve.log
	Netns    string // namespace `pictl serve` runs in
	Config   string
	StateDir string
	Socket   string
	LogPath  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// NewController names the files of an installation in dir (created).
func NewController(bin, dir, netns string) (*Controller, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Controller{
		Bin: bin, Dir: dir, Netns: netns,
		Config:   filepath.Join(dir, "cluster.yaml"),
		StateDir: filepath.Join(dir, "state"),
		Socket:   filepath.Join(dir, "pictl.sock"),
		LogPath:  filepath.Join(dir, "serve.log"),
	}, nil
}

// Run runs a pictl command against this installation (cluster.yaml and
// socket given by environment, as a person would export them) and returns
// its standard output (standard error goes into the error, if any). The CLI talks to the controller over the unix
// socket, so it runs outside the namespace.
func (c *Controller) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = append(os.Environ(), "PICTL_CONFIG="+c.Config, "PICTL_SOCKET="+c.Socket)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("pictl %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// Init writes cluster.yaml with `pictl init` for the namespace's bridge
// and points the API socket into Dir.
func (c *Controller) Init(ctx context.Context, iface, address, dhcpMode string) error {
	if _, err := c.Run(ctx, "init", "--interface", iface, "--address", address,
		"--dhcp-mode", dhcpMode, "--state-dir", c.StateDir); err != nil {
		return err
	}
	b, err := os.ReadFile(c.Config)
	if err != nil {
		return err
	}
	// The default socket is /run/pictl/pictl.sock: a private one lets
	// several installations (tests, a demo) run side by side. The template
	// carries it as a commented-out line.
	const commented = "  # api_socket: /run/pictl/pictl.sock"
	if !bytes.Contains(b, []byte(commented)) {
		return fmt.Errorf("cluster.yaml from pictl init has no %q line to set the socket", commented)
	}
	b = bytes.Replace(b, []byte(commented), []byte("  api_socket: "+c.Socket), 1)
	return os.WriteFile(c.Config, b, 0o644)
}

// Serve starts `pictl serve --log-level debug` inside the namespace and
// waits until its API answers (every socket is open by then).
func (c *Controller) Serve(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return errors.New("pictl serve already runs")
	}
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// ip netns exec execs pictl in place: the PID is pictl's.
	cmd := exec.Command("ip", "netns", "exec", c.Netns, c.Bin, "serve", "--log-level", "debug")
	cmd.Env = append(os.Environ(), "PICTL_CONFIG="+c.Config, "PICTL_SOCKET="+c.Socket)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start pictl serve: %w", err)
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func() {
		err := cmd.Wait()
		logf.Close()
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		close(c.exited)
	}()
	exited := c.exited
	client := api.NewClient(c.Socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Status(sctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			c.mu.Lock()
			e := c.exitErr
			c.mu.Unlock()
			return fmt.Errorf("pictl serve exited at start (%v):\n%s", e, c.LogTail(30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pictl serve: API %s did not answer within 30 s: %v\n%s", c.Socket, err, c.LogTail(30))
		}
	}
}

// PID is the `pictl serve` process id (0 when not running).
func (c *Controller) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Stop ends `pictl serve` by its PID: SIGTERM, then SIGKILL after 10 s. It
// reports how long the graceful stop took and whether it was graceful.
func (c *Controller) Stop() (took time.Duration, graceful bool) {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return 0, true
	}
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		graceful = true
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	c.mu.Lock()
	c.cmd = nil
	c.mu.Unlock()
	return time.Since(start), graceful
}

// Log returns the controller's log so far.
func (c *Controller) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	return string(b)
}

// LogTail returns the last n lines of the controller's log.
func (c *Controller) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(c.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// API is a client of the controller's runtime API.
func (c *Controller) API() *api.Client { return api.NewClient(c.Socket) }
