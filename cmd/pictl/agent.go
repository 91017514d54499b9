package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/agent"
)

// agentBinaryName is the name the controller gives the agent binary in
// every node's root; started under it, pictl is the agent.
const agentBinaryName = "pictl-agent"

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run on a node: switch the node's role when the controller says so",
		Description: `The node's pictl-agent.service runs this. It asks the controller (a long
poll on the controller's agent port, with this node's credential) which role
layer the node should run, waits until that layer shows through the node's
NFS root, reloads systemd, isolates the role's target and reports the
target's and its units' states, which "pictl node ls" shows.

Settings come from the environment or from --env-file (the role layer's
/etc/pictl/agent.env): PICTL_AGENT_URL, PICTL_AGENT_TOKEN, PICTL_NODE.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "env-file", Value: "/etc/pictl/agent.env", Usage: "file with PICTL_AGENT_URL, PICTL_AGENT_TOKEN and PICTL_NODE lines"},
			&cli.StringFlag{Name: "url", EnvVars: []string{"PICTL_AGENT_URL"}, Usage: "the controller's agent listener, http://ADDRESS:PORT"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"PICTL_AGENT_TOKEN"}, Usage: "this node's credential"},
			&cli.StringFlag{Name: "node", EnvVars: []string{"PICTL_NODE"}, Usage: "this node's name"},
			&cli.StringFlag{Name: "root", Value: "/", Usage: "the node's root file system"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log every step"},
		},
		Action: runAgent,
	}
}

func runAgent(c *cli.Context) error {
	env, err := readEnvFile(c.String("env-file"))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	setting := func(flag, key string) string {
		if v := c.String(flag); v != "" {
			return v
		}
		return env[key]
	}
	client := &agent.Client{
		URL:   setting("url", "PICTL_AGENT_URL"),
		Token: setting("token", "PICTL_AGENT_TOKEN"),
		Node:  setting("node", "PICTL_NODE"),
	}
	for _, missing := range []struct{ v, key string }{{client.URL, "PICTL_AGENT_URL"}, {client.Token, "PICTL_AGENT_TOKEN"}, {client.Node, "PICTL_NODE"}} {
		if missing.v == "" {
			return fmt.Errorf("agent: %s is not set (environment or %s)", missing.key, c.String("env-file"))
		}
	}
	level := slog.LevelInfo
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sd, err := agent.DialSystemd(ctx)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer sd.Close()
	log.Info("agent started", "node", client.Node, "controller", client.URL)
	a := &agent.Agent{Client: client, Systemd: sd, Root: c.String("root"), Log: log}
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// readEnvFile reads KEY=VALUE lines (systemd EnvironmentFile= syntax
// without line continuations); a missing file is no error.
func readEnvFile(path string) (map[string]string, error) {
	out := map[string]string{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || s[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE", path, line)
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return out, sc.Err()
}

// asAgent turns `pictl-agent ARGS` into `pictl agent ARGS`.
func asAgent(args []string) []string {
	if len(args) == 0 || filepath.Base(args[0]) != agentBinaryName {
		return args
	}
	if len(args) > 1 && args[1] == "agent" {
		return args
	}
	return append([]string{args[0], "agent"}, args[1:]...)
}
