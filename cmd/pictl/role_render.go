package main

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/roles"
)

// loadRoles reads the built-in roles and the user roles beside cluster.yaml.
func loadRoles(configPath string) (*roles.Catalog, error) {
	cat, err := roles.LoadCatalog(roles.UserDir(configPath))
	if err != nil {
		return nil, err // every problem names its file
	}
	return cat, nil
}

// Placeholders for what only a running controller knows: the agent
// listener's URL and the node's credential.
const (
	agentURLPlaceholder   = "(the agent listener of pictl serve)"
	agentTokenPlaceholder = "(the node's token, issued by pictl serve)"
)

// clusterFacts is what cluster.yaml alone says about the cluster: each
// node's reserved address (not a leased one) and the volumes' exports.
func clusterFacts(cl *cluster.Cluster) roles.Facts {
	f := roles.Facts{
		ControllerAddr: cl.Controller.Address.Addr(),
		Subnet:         cl.Controller.Address.Masked(),
		NFSPort:        cl.Ports.NFS,
		Volumes:        map[string]roles.Volume{},
		Vars:           map[string]map[string]string{},
		Agent:          roles.AgentFacts{URL: agentURLPlaceholder, Token: agentTokenPlaceholder, BinaryPath: roles.DefaultAgentBinaryPath},
	}
	for name, v := range cl.Volumes {
		f.Volumes[name] = roles.Volume{Export: "/volumes/" + name, ReadOnly: v.ReadOnly}
	}
	for name, r := range cl.Roles {
		if len(r.Vars) > 0 {
			f.Vars[name] = r.Vars
		}
	}
	for _, name := range sortedKeys(cl.Nodes) {
		f.Nodes = append(f.Nodes, clusterNode(cl, name, cl.Nodes[name].Role))
	}
	return f
}

// clusterNode describes node name as role renders it.
func clusterNode(cl *cluster.Cluster, name, role string) roles.Node {
	n := cl.Nodes[name]
	rn := roles.Node{Name: name, Arch: n.Arch, Addr: n.IP, Role: role}
	if rn.Arch == "" {
		if img := cl.Images[n.Image]; img != nil {
			rn.Arch = img.Arch
		}
	}
	if len(n.MACs) > 0 {
		rn.MAC = n.MACs[0].String()
	}
	if !rn.Addr.IsValid() {
		rn.Addr = netip.Addr{}
	}
	return rn
}

// renderedFile is one file of `pictl role show ROLE --render NODE -o json`.
type renderedFile struct {
	Path    string `json:"path" yaml:"path"`
	Kind    string `json:"kind" yaml:"kind"` // file, symlink, whiteout
	Mode    string `json:"mode,omitempty" yaml:"mode,omitempty"`
	Target  string `json:"target,omitempty" yaml:"target,omitempty"`
	Content string `json:"content,omitempty" yaml:"content,omitempty"`
}

type renderedTree struct {
	Node  string         `json:"node" yaml:"node"`
	Role  string         `json:"role" yaml:"role"`
	Hash  string         `json:"hash" yaml:"hash"`
	Files []renderedFile `json:"files" yaml:"files"`
}

func describeTree(node, role string, t *roles.Tree) renderedTree {
	out := renderedTree{Node: node, Role: role, Hash: t.Hash(), Files: []renderedFile{}}
	for _, f := range t.Files {
		rf := renderedFile{Path: "/" + f.Path}
		switch {
		case f.IsSymlink():
			rf.Kind, rf.Target = "symlink", string(f.Data)
		case f.IsWhiteout():
			rf.Kind = "whiteout"
		default:
			rf.Kind, rf.Mode, rf.Content = "file", fmt.Sprintf("%04o", f.Mode.Perm()), string(f.Data)
		}
		out.Files = append(out.Files, rf)
	}
	return out
}

// writeTree prints a tree for people: a header line per file, then its
// contents as they will be on the node.
func writeTree(w io.Writer, t renderedTree) error {
	fmt.Fprintf(w, "# %s as %s: %d files, tree %s\n", t.Node, t.Role, len(t.Files), t.Hash[:16])
	fmt.Fprintf(w, "# %s shows placeholders: pictl serve writes the agent's URL and the node's token\n", "/"+roles.AgentEnvPath)
	for _, f := range t.Files {
		switch f.Kind {
		case "symlink":
			fmt.Fprintf(w, "\n== %s -> %s\n", f.Path, f.Target)
		case "whiteout":
			fmt.Fprintf(w, "\n== %s (removed: hides the image's file)\n", f.Path)
		default:
			fmt.Fprintf(w, "\n== %s (%s)\n%s", f.Path, f.Mode, f.Content)
			if len(f.Content) > 0 && f.Content[len(f.Content)-1] != '\n' {
				fmt.Fprintln(w)
			}
		}
	}
	return nil
}
