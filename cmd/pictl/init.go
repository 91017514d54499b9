package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/cluster"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a new, commented cluster.yaml",
		Description: `Writes cluster.yaml (see --config) with the given settings and comments that
explain every section. It refuses to overwrite an existing file.

Example, pictl owning the boot network's addresses:
   pictl init --interface eth1 --address 10.99.0.1/24 --range 10.99.0.100-10.99.0.199

Example, a home router already hands out addresses (pictl only answers netboot requests):
   pictl init --interface eth0 --address 192.168.1.10/24 --dhcp-mode proxy`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "interface", Aliases: []string{"i"}, Usage: "network interface(s) the nodes boot on", Value: cli.NewStringSlice("eth0")},
			&cli.StringFlag{Name: "address", Aliases: []string{"a"}, Usage: "this controller's address on that network, with prefix length (CIDR)", Value: "10.99.0.1/24"},
			&cli.StringFlag{Name: "dhcp-mode", Usage: "full: pictl hands out addresses; proxy: another DHCP server does, pictl only answers netboot requests", Value: "full"},
			&cli.StringFlag{Name: "range", Usage: "dynamic address pool FIRST-LAST for full mode (default: .100-.199 of the subnet)"},
			&cli.StringFlag{Name: "state-dir", Usage: "where images, node filesystems and runtime data live", Value: "/var/lib/pictl"},
		},
		Action: func(c *cli.Context) error {
			st := storeFor(c)
			data, err := cluster.InitTemplate(cluster.InitOptions{
				Interfaces: c.StringSlice("interface"),
				Address:    c.String("address"),
				DHCPMode:   c.String("dhcp-mode"),
				Range:      c.String("range"),
				StateDir:   c.String("state-dir"),
			})
			if err != nil {
				return fmt.Errorf("init: %w", err)
			}
			if err := st.Create(data); err != nil {
				return fmt.Errorf("init: %w", err)
			}
			// The web role serves the www volume: give it a page, so a
			// new web node answers at once. A failure here leaves a valid
			// cluster.yaml; say what to do instead of failing.
			if cl, err := st.Load(); err == nil && cl.Volumes["www"] != nil {
				if err := writeIndexPage(cl.Volumes["www"].Path); err != nil {
					fmt.Fprintf(c.App.ErrWriter, "init: the www volume has no index page: %v (create %s before the web role serves it)\n", err, cl.Volumes["www"].Path)
				}
			}
			fmt.Fprintf(c.App.Writer, "wrote %s\nnext: pictl node add NAME --mac MAC, then pictl serve\n", st.Path())
			return nil
		},
	}
}

// indexPage is the www volume's first page.
const indexPage = `<!DOCTYPE html>
<html>
<head><title>pictl</title></head>
<body>
<h1>pictl web node</h1>
<p>This page is index.html of the shared www volume, served by every node of
the web role. Replace it with your site.</p>
</body>
</html>
`

// writeIndexPage creates the volume directory and its index.html, never
// replacing a page that is already there.
func writeIndexPage(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "index.html"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(indexPage); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
