package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "declare, list and change the machines that netboot from this controller",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "declare a node so it may netboot",
				ArgsUsage: "NAME",
				Description: `NAME becomes the node's hostname and its NFS root /nodes/NAME.
Identify the node by its MAC (--mac, repeat for several NICs) and, for Raspberry
Pis, optionally its serial number (--serial, shown on the Pi's boot screen or in
/proc/cpuinfo; the TFTP request prefix).

   pictl node add pi3 --mac dc:a6:32:01:36:c2 --image rpi-os --role web --ip 10.99.0.13`,
				Flags: append(nodeFieldFlags(true),
					&cli.StringFlag{Name: "from", Usage: "adopt a discovered client (pictl node ls --discovered): take its MAC, serial and model"}),
				Action: nodeAdd,
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list nodes, with addresses and boot stages when the controller runs",
				Flags: []cli.Flag{outputFlag(),
					&cli.BoolFlag{Name: "discovered", Aliases: []string{"d"}, Usage: "list the machines that asked to netboot but are not nodes yet"}},
				Action: func(c *cli.Context) error {
					if c.Bool("discovered") {
						return discoveredList(c)
					}
					return nodeList(c)
				},
			},
			{
				Name:         "show",
				Usage:        "show everything about one node",
				ArgsUsage:    "NAME",
				Flags:        []cli.Flag{outputFlag()},
				BashComplete: completeNodeNames,
				Action:       nodeShow,
			},
			{
				Name:      "set",
				Usage:     "change a node's settings (only the flags given change; an empty value removes the setting)",
				ArgsUsage: "NAME",
				Description: `   pictl node set pi3 --image rpi-os-2025 --ip 10.99.0.23
   pictl node set pi3 --netboot=false      # let the Pi fall through to its next boot mode
   pictl node set pi3 --ip ""              # drop the reserved address`,
				Flags:        nodeFieldFlags(false),
				BashComplete: completeNodeNames,
				Action:       nodeSet,
			},
			{
				Name:      "reset",
				Usage:     "discard the node's own layer (everything it wrote): it boots from its image and role again",
				ArgsUsage: "NAME",
				Description: `Refused while the node looks mounted (it has a connection open or sent an NFS
request in the last two minutes): shut it down first, or use --force to pull
the files from under it. Without a running controller the layer is discarded
from the state directory directly.

   pictl node reset pi3
   pictl node reset pi3 --force`,
				Flags:        []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "reset even while the node is mounted"}},
				BashComplete: completeNodeNames,
				Action:       nodeReset,
			},
			nodeClearQuarantineCommand(),
			{
				Name:         "rm",
				Aliases:      []string{"remove"},
				Usage:        "remove a node from cluster.yaml",
				ArgsUsage:    "NAME",
				BashComplete: completeNodeNames,
				Action:       nodeRemove,
			},
		},
	}
}

func nodeFieldFlags(add bool) []cli.Flag {
	netboot := &cli.BoolFlag{Name: "netboot", Usage: "may netboot from pictl (--netboot=false disables)", Value: true}
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "mac", Aliases: []string{"m"}, Usage: "MAC address, e.g. dc:a6:32:01:36:c2 (repeat for several NICs)"},
		&cli.StringFlag{Name: "serial", Usage: "Raspberry Pi serial number, 8 or 16 hex digits"},
		&cli.StringFlag{Name: "image", Usage: "image the node boots (see pictl image ls)"},
		&cli.StringFlag{Name: "role", Usage: "role: web, db, lb, router or a role of your own (see pictl role ls)"},
		&cli.StringFlag{Name: "ip", Usage: "address reserved for the node (full DHCP mode)"},
		&cli.StringFlag{Name: "model", Usage: "hardware model: pi3, pi3+, pi4, pi5, x86"},
		&cli.StringFlag{Name: "arch", Usage: "CPU architecture: arm64, armhf, amd64"},
		&cli.StringFlag{Name: "cmdline", Usage: "extra kernel command-line arguments for this node"},
		netboot,
	}
}

// nodeFields turns the flags that were given into cluster.yaml keys.
// A nil value means "remove the key".
func nodeFields(c *cli.Context) (map[string]any, error) {
	f := map[string]any{}
	if c.IsSet("mac") {
		var macs []string
		for _, s := range c.StringSlice("mac") {
			for _, part := range strings.Split(s, ",") {
				m, err := net.ParseMAC(strings.TrimSpace(part))
				if err != nil || len(m) != 6 {
					return nil, fmt.Errorf("--mac %q is not a MAC address: write six hex pairs like dc:a6:32:01:36:c2", part)
				}
				macs = append(macs, m.String())
			}
		}
		switch len(macs) {
		case 0:
			return nil, errors.New("--mac: a node needs at least one MAC address")
		case 1:
			f["mac"], f["macs"] = macs[0], nil
		default:
			f["macs"], f["mac"] = macs, nil
		}
	}
	for _, key := range []string{"serial", "image", "role", "ip", "model", "arch", "cmdline"} {
		if !c.IsSet(key) {
			continue
		}
		v := strings.TrimSpace(c.String(key))
		switch {
		case v == "" || (key == "role" && v == "none"):
			f[key] = nil
		case key == "serial":
			f[key] = strings.ToLower(v)
		case key == "ip":
			a, err := netip.ParseAddr(v)
			if err != nil || !a.Is4() {
				return nil, fmt.Errorf("--ip %q is not an IPv4 address: write it like 10.99.0.13", v)
			}
			f[key] = a.String()
		default:
			f[key] = v
		}
	}
	if c.IsSet("netboot") {
		if c.Bool("netboot") {
			f["netboot"] = nil // the default: keep the file short
		} else {
			f["netboot"] = false
		}
	}
	return f, nil
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: expected one %s argument, got %d (see --help)", c.Command.FullName(), what, c.NArg())
	}
	return c.Args().First(), nil
}

func nodeAdd(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	fields, err := nodeFields(c)
	if err != nil {
		return fmt.Errorf("node add %s: %w", name, err)
	}
	if c.IsSet("from") {
		cl, err := storeFor(c).Load()
		if err != nil {
			return fmt.Errorf("node add %s: %w", name, err)
		}
		if err := adoptFields(c, cl, fields); err != nil {
			return fmt.Errorf("node add %s: %w", name, err)
		}
	}
	if fields["mac"] == nil && fields["macs"] == nil {
		return fmt.Errorf("node add %s: give the node's MAC with --mac, or adopt a discovered client with --from MAC", name)
	}
	_, err = update(c, func(d *cluster.Document) error {
		if _, ok := d.Get("nodes", name); ok {
			return fmt.Errorf("node %s already exists: use pictl node set %s to change it", name, name)
		}
		return setFields(d, fields, "nodes", name)
	})
	if err != nil {
		return fmt.Errorf("node add %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "%s: added\n", name)
	return nil
}

func nodeSet(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	fields, err := nodeFields(c)
	if err != nil {
		return fmt.Errorf("node set %s: %w", name, err)
	}
	if len(fields) == 0 {
		return fmt.Errorf("node set %s: nothing to change: give at least one flag (see --help)", name)
	}
	var before, after *cluster.Node
	cl, err := update(c, func(d *cluster.Document) error {
		old, err := d.Cluster()
		if err != nil {
			return err
		}
		if before = old.Nodes[name]; before == nil {
			return unknownNode(name)
		}
		return setFields(d, fields, "nodes", name)
	})
	if err != nil {
		return fmt.Errorf("node set %s: %w", name, err)
	}
	after = cl.Nodes[name]
	printNodeDiff(c.App.Writer, name, before, after)
	return nil
}

func setFields(d *cluster.Document, fields map[string]any, path ...string) error {
	for key, v := range fields {
		p := append(path[:len(path):len(path)], key)
		if v == nil {
			if err := d.Delete(p...); err != nil && !isNotFound(err) {
				return err
			}
			continue
		}
		if err := d.Set(v, p...); err != nil {
			return err
		}
	}
	return nil
}

func nodeRemove(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	_, err = update(c, func(d *cluster.Document) error {
		if err := d.Delete("nodes", name); err != nil {
			if isNotFound(err) {
				return unknownNode(name)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node rm %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "%s: removed\n", name)
	return nil
}

// nodeRows is the node list of cluster.yaml (the desired state, as the
// last CLI change left it, whether or not the controller has reloaded it
// yet) with the running controller's runtime facts merged in; without a
// controller the rows have no runtime facts.
func nodeRows(c *cli.Context) ([]api.Node, *cluster.Cluster, error) {
	cl, err := storeFor(c).Load()
	if err != nil {
		return nil, nil, err
	}
	rows := make([]api.Node, 0, len(cl.Nodes))
	for _, name := range sortedKeys(cl.Nodes) {
		rows = append(rows, api.NodeFromCluster(name, cl.Nodes[name]))
	}
	live, err := apiClient(c, cl).Nodes(c.Context)
	if api.IsNotRunning(err) {
		return rows, cl, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return mergeRuntime(rows, live), cl, nil
}

func apiClient(c *cli.Context, cl *cluster.Cluster) *api.Client {
	socket := c.String("socket")
	if socket == "" {
		socket = cl.Controller.APISocket
	}
	return api.NewClient(socket)
}

func nodeList(c *cli.Context) error {
	rows, cl, err := nodeRows(c)
	if err != nil {
		return fmt.Errorf("node ls: %w", err)
	}
	// A node without an image boots the default one; say which, in
	// parentheses, so the table tells what each node runs.
	defaultImage := ""
	if def, _, ok := cl.DefaultImage(); ok {
		defaultImage = "(" + def + ")"
	}
	now := time.Now()
	return emit(c, rows, func(w io.Writer) error {
		t := newTable(w, "NAME", "MAC", "IP", "IMAGE", "ROLE", "NETBOOT", "LEASE", "STAGE", "SEEN")
		var notes []string
		for _, n := range rows {
			ip, lease, stage, seen := n.IP, "", "", ""
			role := n.Role
			if r := n.Runtime; r != nil {
				if r.Role != nil {
					role = r.Role.Summary()
					if r.Role.Refused != "" {
						role += " (" + orNone(n.Role) + " refused)"
						notes = append(notes, fmt.Sprintf("%s: role %s refused: %s", n.Name, orNone(n.Role), r.Role.Refused))
					}
				}
				if ip == "" {
					ip = r.Address
				}
				if !r.LeaseExpires.IsZero() {
					lease = until(now, r.LeaseExpires)
				}
				if r.BootStage != "" {
					stage = r.BootStage + " " + ago(now, r.BootStageAt)
				}
				if !r.LastSeen.IsZero() {
					seen = ago(now, r.LastSeen)
				}
			}
			image := n.Image
			if image == "" {
				image = defaultImage
			}
			t.row(n.Name, strings.Join(n.MACs, ","), ip, image, role, onOff(n.Netboot), lease, stage, seen)
		}
		if err := t.flush(); err != nil {
			return err
		}
		for _, note := range notes {
			fmt.Fprintln(w, note)
		}
		return nil
	})
}

func nodeShow(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	rows, _, err := nodeRows(c)
	if err != nil {
		return fmt.Errorf("node show: %w", err)
	}
	for _, n := range rows {
		if n.Name != name {
			continue
		}
		return emit(c, n, func(w io.Writer) error {
			t := newTable(w, "name:", n.Name)
			t.row("macs:", strings.Join(n.MACs, ", "))
			t.row("serial:", n.Serial)
			t.row("model:", n.Model)
			t.row("arch:", n.Arch)
			t.row("image:", n.Image)
			t.row("role:", n.Role)
			t.row("ip:", n.IP)
			t.row("netboot:", onOff(n.Netboot))
			if r := n.Runtime; r != nil {
				now := time.Now()
				t.row("address:", r.Address)
				t.row("lease:", r.LeaseIP, until(now, r.LeaseExpires))
				t.row("boot stage:", r.BootStage, ago(now, r.BootStageAt))
				t.row("last seen:", ago(now, r.LastSeen))
				if rs := r.Role; rs != nil {
					t.row("role state:", rs.Summary())
					if rs.Refused != "" {
						t.row("refused:", rs.Refused)
					}
					if rs.Error != "" {
						t.row("agent error:", rs.Error)
					}
					t.row("role layer:", rs.Layer)
					if !rs.ReportedAt.IsZero() {
						t.row("agent report:", ago(now, rs.ReportedAt))
					}
				}
			} else {
				t.row("runtime:", "controller not running")
			}
			return t.flush()
		})
	}
	return fmt.Errorf("node show: %w", unknownNode(name))
}

func printNodeDiff(w io.Writer, name string, before, after *cluster.Node) {
	a, b := api.NodeFromCluster(name, before), api.NodeFromCluster(name, after)
	changed := false
	diff := func(key, x, y string) {
		if x != y {
			fmt.Fprintf(w, "%s: %s %s → %s\n", name, key, orNone(x), orNone(y))
			changed = true
		}
	}
	diff("mac", strings.Join(a.MACs, ","), strings.Join(b.MACs, ","))
	diff("serial", a.Serial, b.Serial)
	diff("model", a.Model, b.Model)
	diff("arch", a.Arch, b.Arch)
	diff("image", a.Image, b.Image)
	diff("role", a.Role, b.Role)
	diff("ip", a.IP, b.IP)
	diff("netboot", onOff(a.Netboot), onOff(b.Netboot))
	diff("cmdline", before.Cmdline, after.Cmdline)
	if !changed {
		fmt.Fprintf(w, "%s: unchanged\n", name)
	}
}

func completeNodeNames(c *cli.Context) {
	if c.NArg() > 0 {
		return
	}
	cl, err := storeFor(c).Load()
	if err != nil {
		return
	}
	for _, name := range sortedKeys(cl.Nodes) {
		fmt.Fprintln(c.App.Writer, name)
	}
}

type unknownNodeError string

func (e unknownNodeError) Error() string {
	return fmt.Sprintf("no node named %s (see pictl node ls)", string(e))
}
func (e unknownNodeError) NotFound() bool { return true }

func unknownNode(name string) error { return unknownNodeError(name) }

func isNotFound(err error) bool {
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}

// update edits cluster.yaml under the store's lock. A file that is invalid
// before the edit is reported with its line numbers, so the person can fix
// it; errors the edit itself would cause are explained without them.
func update(c *cli.Context, fn func(d *cluster.Document) error) (*cluster.Cluster, error) {
	invalidBefore := false
	cl, err := storeFor(c).Update(func(d *cluster.Document) error {
		if _, err := d.Cluster(); err != nil {
			invalidBefore = true
			return fmt.Errorf("%s is invalid; fix it first:\n%w", storeFor(c).Path(), err)
		}
		return fn(d)
	})
	if err != nil && !invalidBefore {
		err = explain(err)
	}
	return cl, err
}

// explain rewrites validation errors of a file the command was about to
// write: their line numbers point into a file that was never saved, so only
// the message and the fix are useful.
func explain(err error) error {
	var list cluster.ErrorList
	if !errors.As(err, &list) {
		return err
	}
	msgs := make([]string, 0, len(list))
	for _, e := range list {
		m := e.Msg
		if e.Fix != "" {
			m += "; " + e.Fix
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func until(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	if t.Before(now) {
		return "expired"
	}
	return "for " + t.Sub(now).Round(time.Second).String()
}

// sortedKeys orders names naturally: pi2 before pi10.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortNatural(keys)
	return keys
}
