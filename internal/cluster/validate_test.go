package cluster

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata file name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// TestLoadGolden loads every testdata/validate/*.yaml. The golden file
// holds the errors, one per line with file:line:column, or for a valid
// file the cluster with its defaults filled in.
func TestLoadGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/validate/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatal("no test files", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Load("cluster.yaml", data)
			var got string
			if err != nil {
				if _, ok := err.(ErrorList); !ok {
					t.Fatalf("error is %T, want ErrorList", err)
				}
				got = err.Error() + "\n"
				if strings.HasPrefix(name, "ok_") {
					t.Errorf("expected no errors, got:\n%s", got)
				}
			} else {
				if !strings.HasPrefix(name, "ok_") {
					t.Errorf("expected errors, file loaded")
				}
				b, err := json.MarshalIndent(dump(c), "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got = string(b) + "\n"
			}
			golden(t, "validate/"+name+".golden", []byte(got))
		})
	}
}

// dump is a Cluster in a form that prints readably as JSON (MACs as text).
func dump(c *Cluster) any {
	type node struct {
		*Node
		MACs []string
	}
	nodes := map[string]node{}
	for name, n := range c.Nodes {
		v := node{Node: n}
		for _, m := range n.MACs {
			v.MACs = append(v.MACs, m.String())
		}
		nodes[name] = v
	}
	out := map[string]any{
		"Controller": c.Controller, "Ports": c.Ports, "DHCP": c.DHCP, "TFTP": c.TFTP, "Discovery": c.Discovery,
		"Images": c.Images, "Nodes": nodes, "Volumes": c.Volumes, "Roles": c.Roles,
	}
	// Only where written, so the goldens of files without it stay as they were.
	if !reflect.ValueOf(c.Balancer).IsZero() {
		out["Balancer"] = c.Balancer
	}
	return out
}
