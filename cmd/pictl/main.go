// Command pictl is the netboot cluster manager: `pictl serve` runs the
// controller; every other command edits cluster.yaml or asks the running
// controller.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	app := newApp(os.Stdout, os.Stderr)
	if err := app.Run(interspersed(app, asAgent(os.Args))); err != nil {
		fmt.Fprintf(os.Stderr, "pictl: %s\n", strings.TrimRight(err.Error(), "\n"))
		os.Exit(1)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "pictl",
		Usage: "netboot and run a cluster of diskless Raspberry Pis from one controller",
		Description: `pictl serves DHCP, TFTP and NFS root filesystems to netbooting Raspberry Pis
(and x86 PCs / QEMU guests), and gives every node a role (web, db, lb, router).

The desired state lives in one human-editable file, cluster.yaml. Commands such
as "node add" and "role set" edit it (keeping your comments); "pictl serve"
notices every change within a second and applies it.

Getting started:
   pictl init --interface eth0 --address 10.99.0.1/24     # write cluster.yaml
   pictl node add pi3 --mac dc:a6:32:01:36:c2              # declare a node
   pictl role set pi3 web                                  # give it a role
   pictl serve                                             # run the controller`,
		Version:              buildVersion(),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "config",
				Aliases: []string{"c"},
				Usage:   "path of cluster.yaml (default /etc/pictl/cluster.yaml)",
				EnvVars: []string{"PICTL_CONFIG"},
			},
			&cli.StringFlag{
				Name:    "socket",
				Usage:   "controller API socket (default: controller.api_socket from cluster.yaml)",
				EnvVars: []string{"PICTL_SOCKET"},
			},
		},
		Commands: []*cli.Command{
			initCommand(),
			nodeCommand(),
			roleCommand(),
			imageCommand(),
			lbCommand(),
			serveCommand(),
			agentCommand(),
			apiCommand(),
			versionCommand(),
			completionCommand(),
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// storeFor opens the cluster.yaml named by --config / $PICTL_CONFIG.
func storeFor(c *cli.Context) *store.Store {
	return store.New(store.ConfigPath(c.String("config")))
}
