package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/controller"
	"github.com/pictl/pictl/roles"
)

// roleInfo is one row of `pictl role ls`.
type roleInfo struct {
	Name        string   `json:"name" yaml:"name"`
	Builtin     bool     `json:"builtin" yaml:"builtin"`
	Description string   `json:"description" yaml:"description"`
	Nodes       []string `json:"nodes" yaml:"nodes"`
}

func builtinRoleDescription(name string) string {
	switch name {
	case "web":
		return "nginx on port 8000 serving the shared www volume; joins the balancer"
	case "db":
		return "MariaDB on the node's address, data kept in the node's own layer"
	case "lb":
		return "HAProxy in front of the web nodes, keepalived VRRP virtual IP shared by two lb nodes"
	case "router":
		return "IP forwarding and NAT between two interfaces, static routes, optional FRR/OSPF"
	}
	return ""
}

func roleCommand() *cli.Command {
	return &cli.Command{
		Name:  "role",
		Usage: "give nodes roles (web, db, lb, router or your own) and list them",
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "give a node a role (\"none\" removes it)",
				ArgsUsage: "NODE ROLE",
				Description: `The node's root filesystem gets the role's systemd target and drop-ins; a
running controller applies the change at once, no reboot needed.

   pictl role set pi3 web
   pictl role set pi3 none
   pictl role set pi3 db --wait      # until pi3 reports the target active or failed
   pictl role set pi3 db --reboot    # switch by rebooting pi3 instead`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "wait", Usage: "wait until the node reports its new role's target active or failed"},
					&cli.BoolFlag{Name: "reboot", Usage: "switch by rebooting the node instead of live"},
					&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long --wait waits"},
				},
				BashComplete: completeRoleSet,
				Action:       roleSet,
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list the roles and the nodes in each",
				Flags:   []cli.Flag{outputFlag()},
				Action:  roleList,
			},
			{
				Name:      "show",
				Usage:     "describe a role and list its nodes, or the files a node would get",
				ArgsUsage: "ROLE",
				Flags: []cli.Flag{outputFlag(),
					&cli.StringFlag{Name: "render", Usage: "print the files `NODE` would get with this role"},
				},
				Action: roleShow,
			},
		},
	}
}

func roleSet(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("role set: expected NODE ROLE, got %d arguments (e.g. pictl role set pi3 web)", c.NArg())
	}
	node, role := c.Args().Get(0), strings.TrimSpace(c.Args().Get(1))
	var client *api.Client
	var gen uint64
	if c.Bool("wait") || c.Bool("reboot") {
		cl, err := storeFor(c).Load()
		if err != nil {
			return fmt.Errorf("role set %s: %w", node, err)
		}
		if _, ok := cl.Nodes[node]; !ok {
			return fmt.Errorf("role set %s: %w", node, unknownNode(node))
		}
		client = apiClient(c, cl)
		st, err := client.Status(c.Context)
		if err != nil {
			return fmt.Errorf("role set %s: --wait and --reboot need the running controller: %w", node, err)
		}
		gen = st.Generation
		if c.Bool("reboot") {
			if err := client.SwitchByReboot(c.Context, node); err != nil {
				return fmt.Errorf("role set %s: %w", node, err)
			}
		}
	}
	var before string
	cl, err := update(c, func(d *cluster.Document) error {
		old, err := d.Cluster()
		if err != nil {
			return err
		}
		n := old.Nodes[node]
		if n == nil {
			return unknownNode(node)
		}
		before = n.Role
		if role == "none" || role == "" {
			if err := d.Delete("nodes", node, "role"); err != nil && !isNotFound(err) {
				return err
			}
			return nil
		}
		if !roleKnown(old, role) {
			return fmt.Errorf("unknown role %q: use one of %s, or declare it under roles: in cluster.yaml", role, strings.Join(roleNames(old), ", "))
		}
		return d.Set(role, "nodes", node, "role")
	})
	if err != nil {
		return fmt.Errorf("role set %s: %w", node, err)
	}
	after := cl.Nodes[node].Role
	if before == after {
		fmt.Fprintf(c.App.Writer, "%s: role %s (unchanged)\n", node, orNone(after))
		gen = 0 // no reload to wait for
	} else {
		fmt.Fprintf(c.App.Writer, "%s: role %s → %s\n", node, orNone(before), orNone(after))
	}
	if !c.Bool("wait") {
		return nil
	}
	return waitRole(c, client, node, after, gen)
}

// waitRole polls the controller until node reports role's target active
// or failed, after the controller has loaded the edit (generation > gen).
func waitRole(c *cli.Context, client *api.Client, node, role string, gen uint64) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		if st, err := client.Status(ctx); err == nil && st.Generation > gen {
			rows, err := client.Nodes(ctx)
			if err != nil {
				return fmt.Errorf("role set %s: %w", node, err)
			}
			for _, n := range rows {
				if n.Name != node || n.Runtime == nil {
					continue
				}
				rs := n.Runtime.Role
				if rs == nil {
					return fmt.Errorf("role set %s: the controller renders no role layers", node)
				}
				if rs.Refused != "" && rs.Role != role {
					return fmt.Errorf("role set %s: refused, the node keeps role %s: %s", node, orNone(rs.Role), rs.Refused)
				}
				last = rs.Summary()
				if rs.Role == role && rs.Applied == rs.Layer && rs.Layer != "" {
					switch rs.State {
					case api.RoleActive:
						fmt.Fprintf(c.App.Writer, "%s: %s (%.1fs)%s\n", node, last, time.Since(start).Seconds(), stageLine(rs))
						return nil
					case api.RoleFailed:
						return fmt.Errorf("%s: %s", node, last)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			if last == "" {
				last = "no answer from the controller"
			}
			return fmt.Errorf("role set %s: no final report within %s (now: %s)", node, c.Duration("timeout"), last)
		case <-tick.C:
		}
	}
}

// stageLine says where the switch's time went.
func stageLine(rs *api.RoleStatus) string {
	var parts []string
	for _, k := range []string{"render", "layer_visible", "reload", "isolate", "settle"} {
		if d, ok := rs.Stages[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", strings.ReplaceAll(k, "_", " "), d.Round(time.Millisecond)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

func roleKnown(cl *cluster.Cluster, role string) bool {
	_, user := cl.Roles[role]
	return user || slices.Contains(cluster.BuiltinRoles(), role)
}

func roleNames(cl *cluster.Cluster) []string {
	names := cluster.BuiltinRoles()
	for _, n := range sortedKeys(cl.Roles) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func roleInfos(cl *cluster.Cluster) []roleInfo {
	var out []roleInfo
	for _, name := range roleNames(cl) {
		ri := roleInfo{Name: name, Nodes: []string{}}
		if r, ok := cl.Roles[name]; ok {
			ri.Description = r.Description
		} else {
			ri.Builtin, ri.Description = true, builtinRoleDescription(name)
		}
		for _, n := range sortedKeys(cl.Nodes) {
			if cl.Nodes[n].Role == name {
				ri.Nodes = append(ri.Nodes, n)
			}
		}
		out = append(out, ri)
	}
	return out
}

func roleList(c *cli.Context) error {
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("role ls: %w", err)
	}
	roles := roleInfos(cl)
	return emit(c, roles, func(w io.Writer) error {
		t := newTable(w, "ROLE", "KIND", "NODES", "DESCRIPTION")
		for _, r := range roles {
			kind := "user"
			if r.Builtin {
				kind = "built-in"
			}
			t.row(r.Name, kind, strings.Join(r.Nodes, ","), r.Description)
		}
		return t.flush()
	})
}

func roleShow(c *cli.Context) error {
	name, err := oneArg(c, "ROLE")
	if err != nil {
		return err
	}
	st := storeFor(c)
	cl, err := st.Load()
	if err != nil {
		return fmt.Errorf("role show: %w", err)
	}
	if node := c.String("render"); node != "" {
		tree, err := controller.PreviewRole(st, cl, node, name)
		if err != nil {
			return fmt.Errorf("role show %s --render %s: %w", name, node, err)
		}
		printTree(c.App.Writer, tree)
		return nil
	}
	for _, r := range roleInfos(cl) {
		if r.Name != name {
			continue
		}
		return emit(c, r, func(w io.Writer) error {
			kind := "user-defined"
			if r.Builtin {
				kind = "built-in"
			}
			t := newTable(w, "role:", r.Name)
			t.row("kind:", kind)
			t.row("target:", roles.TargetName(r.Name))
			t.row("description:", r.Description)
			t.row("nodes:", strings.Join(r.Nodes, ", "))
			return t.flush()
		})
	}
	return fmt.Errorf("role show: unknown role %q: use one of %s", name, strings.Join(roleNames(cl), ", "))
}

// printTree lists a rendered tree: each file's path and mode, then its
// content; symlinks and whiteouts on one line.
func printTree(w io.Writer, t *roles.Tree) {
	for _, f := range t.Files {
		switch {
		case f.Mode&fs.ModeSymlink != 0:
			fmt.Fprintf(w, "%s -> %s\n", f.Path, f.Data)
		case f.Mode&fs.ModeCharDevice != 0:
			fmt.Fprintf(w, "%s (removed: whiteout)\n", f.Path)
		default:
			fmt.Fprintf(w, "==> %s (%04o)\n%s", f.Path, f.Mode.Perm(), f.Data)
			if len(f.Data) > 0 && f.Data[len(f.Data)-1] != '\n' {
				fmt.Fprintln(w)
			}
		}
	}
}

func completeRoleSet(c *cli.Context) {
	switch c.NArg() {
	case 0:
		completeNodeNames(c)
	case 1:
		if cl, err := storeFor(c).Load(); err == nil {
			for _, r := range append(roleNames(cl), "none") {
				fmt.Fprintln(c.App.Writer, r)
			}
		}
	}
}
