package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/roles"
)

// roleInfo is one row of `pictl role ls` and what `pictl role show` says.
type roleInfo struct {
	Name        string     `json:"name" yaml:"name"`
	Builtin     bool       `json:"builtin" yaml:"builtin"`
	Kind        string     `json:"kind" yaml:"kind"` // built-in, user, declared (no definition file)
	Description string     `json:"description" yaml:"description"`
	Extends     string     `json:"extends,omitempty" yaml:"extends,omitempty"`
	File        string     `json:"file,omitempty" yaml:"file,omitempty"`
	Target      string     `json:"target" yaml:"target"`
	Packages    []string   `json:"packages" yaml:"packages"`
	Units       []string   `json:"units" yaml:"units"`
	Volumes     []string   `json:"volumes" yaml:"volumes"`
	Balancer    *roleCheck `json:"balancer,omitempty" yaml:"balancer,omitempty"`
	Vars        []string   `json:"vars" yaml:"vars"`
	Nodes       []string   `json:"nodes" yaml:"nodes"`
}

type roleCheck struct {
	Port  int    `json:"port" yaml:"port"`
	Check string `json:"check" yaml:"check"`
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
	// User roles are files beside cluster.yaml; a broken one is reported
	// when it is the role asked for, and does not stop setting another.
	cat, catErr := loadRoles(storeFor(c).Path())
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
		if !roleKnown(old, cat, role) {
			if catErr != nil {
				// The role may be the file that does not load.
				return fmt.Errorf("role %q: %w", role, catErr)
			}
			return fmt.Errorf("unknown role %q: use one of %s, or add %s", role, strings.Join(old.RoleNames(), ", "), filepath.Join(roles.UserDir(storeFor(c).Path()), role+".yaml"))
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

// roleKnown reports whether role may be set: a built-in, a definition in
// the roles directory that loads (cat; nil when the directory did not), or
// a role declared under roles: in cluster.yaml.
func roleKnown(cl *cluster.Cluster, cat *roles.Catalog, role string) bool {
	if slices.Contains(cluster.BuiltinRoles(), role) {
		return true
	}
	if cat == nil {
		return false
	}
	if _, ok := cat.Role(role); ok {
		return true
	}
	_, declared := cl.Roles[role]
	return declared
}

// roleInfos lists the catalog's roles, then roles declared under roles:
// in cluster.yaml that have no definition file.
func roleInfos(cl *cluster.Cluster, cat *roles.Catalog) []roleInfo {
	var out []roleInfo
	names := cat.Names()
	for _, n := range sortedKeys(cl.Roles) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, name := range names {
		ri := roleInfo{Name: name, Target: roles.TargetName(name), Kind: "declared (no definition in roles/)",
			Packages: []string{}, Units: []string{}, Volumes: []string{}, Vars: []string{}, Nodes: []string{}}
		if r, ok := cat.Role(name); ok {
			ri.Builtin, ri.Description, ri.Extends, ri.File = r.Builtin(), r.Description(), r.Extends(), r.File()
			ri.Kind = "user"
			if r.Builtin() {
				ri.Kind, ri.File = "built-in", ""
			}
			for _, alts := range r.Packages() {
				ri.Packages = append(ri.Packages, strings.Join(alts, "|"))
			}
			ri.Units, ri.Volumes, ri.Vars = r.Units(), r.Volumes(), r.Vars()
			if port, check, ok := r.Balancer(); ok {
				desc := check.Kind + " " + check.Path + " every " + check.Interval.String()
				if check.Kind == "tcp" {
					desc = "tcp every " + check.Interval.String()
				}
				ri.Balancer = &roleCheck{Port: port, Check: desc}
			}
		} else if r := cl.Roles[name]; r != nil {
			ri.Description = r.Description
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
	cat, err := loadRoles(storeFor(c).Path())
	if err != nil {
		return fmt.Errorf("role ls: %w", err)
	}
	infos := roleInfos(cl, cat)
	return emit(c, infos, func(w io.Writer) error {
		t := newTable(w, "ROLE", "KIND", "NODES", "DESCRIPTION")
		for _, r := range infos {
			t.row(r.Name, r.Kind, strings.Join(r.Nodes, ","), r.Description)
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
	cat, err := loadRoles(storeFor(c).Path())
	if err != nil {
		return fmt.Errorf("role show: %w", err)
	}
	if node := c.String("render"); node != "" {
		return roleRender(c, cl, cat, name, node)
	}
	for _, r := range roleInfos(cl, cat) {
		if r.Name != name {
			continue
		}
		return emit(c, r, func(w io.Writer) error {
			t := newTable(w, "role:", r.Name)
			t.row("kind:", r.Kind)
			if r.Extends != "" {
				t.row("extends:", r.Extends)
			}
			if r.File != "" {
				t.row("file:", r.File)
			}
			t.row("target:", r.Target)
			t.row("description:", r.Description)
			t.row("packages:", strings.Join(r.Packages, ", "))
			t.row("units:", strings.Join(r.Units, ", "))
			t.row("volumes:", strings.Join(r.Volumes, ", "))
			if r.Balancer != nil {
				t.row("balancer:", fmt.Sprintf("port %d, check %s", r.Balancer.Port, r.Balancer.Check))
			}
			if len(r.Vars) > 0 {
				t.row("vars:", strings.Join(r.Vars, ", "))
			}
			t.row("nodes:", strings.Join(r.Nodes, ", "))
			return t.flush()
		})
	}
	return fmt.Errorf("role show: unknown role %q: use one of %s", name, strings.Join(cat.Names(), ", "))
}

// roleRender prints the files node would get as a node of role, from
// cluster.yaml's facts (its reserved address, not a leased one).
func roleRender(c *cli.Context, cl *cluster.Cluster, cat *roles.Catalog, role, node string) error {
	if cl.Nodes[node] == nil {
		return fmt.Errorf("role show %s --render: %w", role, unknownNode(node))
	}
	if _, ok := cat.Role(role); !ok && role != roles.NoRole {
		return fmt.Errorf("role show %s --render: unknown role %q: use one of %s, or %s", role, role, strings.Join(cat.Names(), ", "), roles.NoRole)
	}
	tree, err := cat.Render(clusterNode(cl, node, role), clusterFacts(cl))
	if err != nil {
		return fmt.Errorf("role show %s --render %s: %w", role, node, err)
	}
	rt := describeTree(node, role, tree)
	return emit(c, rt, func(w io.Writer) error { return writeTree(w, rt) })
}

func completeRoleSet(c *cli.Context) {
	switch c.NArg() {
	case 0:
		completeNodeNames(c)
	case 1:
		if cl, err := storeFor(c).Load(); err == nil {
			for _, r := range append(cl.RoleNames(), "none") {
				fmt.Fprintln(c.App.Writer, r)
			}
		}
	}
}
