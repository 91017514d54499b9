package roles

import (
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// sampleNodes is a small cluster: one node of each built-in role and one
// without a role, as cluster.yaml would describe it.
func sampleNodes() []Node {
	return []Node{
		{Name: "pi1", Arch: "arm64", Addr: netip.MustParseAddr("10.99.0.11"), MAC: "dc:a6:32:01:36:c1", Role: "web"},
		{Name: "pi2", Arch: "arm64", Addr: netip.MustParseAddr("10.99.0.12"), MAC: "dc:a6:32:01:36:c2", Role: "db"},
		{Name: "pi3", Arch: "armhf", Addr: netip.MustParseAddr("10.99.0.13"), MAC: "b8:27:eb:01:36:c3", Role: "lb"},
		{Name: "pi4", Arch: "arm64", Addr: netip.MustParseAddr("10.99.0.14"), MAC: "dc:a6:32:01:36:c4", Role: "router"},
		{Name: "pi5", Arch: "arm64", Addr: netip.MustParseAddr("10.99.0.15"), MAC: "dc:a6:32:01:36:c5"},
		// A second lb node (the VRRP peer) and a second web node (an HAProxy
		// server more), both later by name than the first of their role.
		{Name: "pi6", Arch: "arm64", Addr: netip.MustParseAddr("10.99.0.16"), MAC: "dc:a6:32:01:36:c6", Role: "lb"},
		{Name: "pi7", Arch: "arm64", Addr: netip.MustParseAddr("10.99.0.17"), MAC: "dc:a6:32:01:36:c7", Role: "web"},
	}
}

func sampleFacts() Facts {
	return Facts{
		ControllerAddr: netip.MustParseAddr("10.99.0.1"),
		NFSPort:        2049,
		Volumes: map[string]Volume{
			"www":     {Export: "/volumes/www", ReadOnly: true},
			"scratch": {Export: "/volumes/scratch"},
			"shop":    {Export: "/volumes/shop", ReadOnly: true},
		},
		Nodes:  sampleNodes(),
		Subnet: netip.MustParsePrefix("10.99.0.1/24"),
		Vars: map[string]map[string]string{
			"lb":     {"vip": "10.99.0.50/24", "db": "db"},
			"router": {"uplink": "eth1", "routes": "10.1.0.0/16 via 10.99.0.254", "ospf_area": "0.0.0.0"},
		},
		Agent: AgentFacts{URL: "http://10.99.0.1:7071", Token: "0123456789abcdef", BinaryPath: DefaultAgentBinaryPath},
	}
}

// sampleNode is the node of that role in sampleNodes.
func sampleNode(t *testing.T, role string) Node {
	t.Helper()
	for _, n := range sampleNodes() {
		if n.Role == role || (role == NoRole && n.Role == "") {
			return n
		}
	}
	t.Fatalf("no sample node of role %s", role)
	return Node{}
}

func builtins(t *testing.T) *Catalog {
	t.Helper()
	c, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeRoles makes a user role directory from name → content; names with
// a slash make subdirectories.
func writeRoles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dump is a tree as text: each file's path, mode and contents.
func dump(tr *Tree) string {
	var b strings.Builder
	for _, f := range tr.Files {
		b.WriteString("== " + f.Path + " " + fileMode(f.Mode))
		switch {
		case f.IsSymlink():
			b.WriteString(" -> " + string(f.Data) + "\n")
		case f.IsWhiteout():
			b.WriteString("\n")
		default:
			b.WriteString("\n" + string(f.Data))
			if len(f.Data) > 0 && !strings.HasSuffix(string(f.Data), "\n") {
				b.WriteString("\n\\ no newline at end of file\n")
			}
		}
	}
	return b.String()
}

// fileMode names a file's kind or permission bits: "0644", "symlink",
// "whiteout".
func fileMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&whiteoutMode == whiteoutMode:
		return "whiteout"
	}
	return fmt.Sprintf("%04o", m.Perm())
}
