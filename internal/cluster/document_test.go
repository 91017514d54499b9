package cluster

import (
	"errors"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func readDoc(t *testing.T, path string) *Document {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDocument("cluster.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func docBytes(t *testing.T, d *Document) []byte {
	t.Helper()
	out, err := d.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load("cluster.yaml", out); err != nil {
		t.Fatalf("edited document is invalid:\n%v\n%s", err, out)
	}
	return out
}

// TestDocumentRoundTrip edits a hand-written file with comments, blank
// lines, quoting and an odd key order; everything the edits did not touch
// must survive (golden).
func TestDocumentRoundTrip(t *testing.T) {
	d := readDoc(t, "testdata/document/handwritten.yaml")
	golden(t, "document/handwritten.noop.golden", docBytes(t, d))

	steps := []struct {
		value any
		path  []string
	}{
		{"db", []string{"nodes", "pi1", "role"}},               // flow node, value in place
		{"lb", []string{"nodes", "pi3", "role"}},               // keeps "# keep the data here"
		{"dc:a6:32:01:36:d3", []string{"nodes", "pi3", "mac"}}, // keeps the quotes
		{"10.99.0.14", []string{"nodes", "pi4", "ip"}},         // new key in schema order
		{map[string]any{"mac": "dc:a6:32:01:36:c5", "role": "web", "serial": "12345678", "netboot": false, "ip": nil}, []string{"nodes", "pi5"}},
		{"router", []string{"nodes", "pi6", "role"}}, // created node, one line like its siblings
		{"dc:a6:32:01:36:c6", []string{"nodes", "pi6", "mac"}},
		{"30m", []string{"dhcp", "lease"}},             // keeps its line comment
		{"record", []string{"discovery"}},              // new top-level key
		{true, []string{"volumes", "www", "readonly"}}, // new section, nested
		{[]string{"web", "lb"}, []string{"volumes", "www", "roles"}},
		{[]string{"br0", "br1"}, []string{"controller", "interfaces"}},
	}
	for _, s := range steps {
		if err := d.Set(s.value, s.path...); err != nil {
			t.Fatalf("Set(%v, %v): %v", s.value, s.path, err)
		}
	}
	for _, path := range [][]string{{"nodes", "pi2"}, {"controller", "interface"}} {
		if err := d.Delete(path...); err != nil {
			t.Fatalf("Delete(%v): %v", path, err)
		}
	}
	golden(t, "document/handwritten.edited.golden", docBytes(t, d))

	c, err := d.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Nodes["pi5"]; got == nil || got.Role != "web" || got.Serial != "12345678" || got.NetbootEnabled() {
		t.Errorf("pi5 = %+v", got)
	}
	if got := c.Controller.Interfaces; strings.Join(got, ",") != "br0,br1" {
		t.Errorf("interfaces = %v", got)
	}
}

// TestDocumentCanonicalUnchanged: a file already in pictl's own format
// comes back byte for byte.
func TestDocumentCanonicalUnchanged(t *testing.T) {
	for _, o := range []InitOptions{
		{Interfaces: []string{"eth0"}, Address: "10.99.0.1/24"},
		{Address: "192.168.1.10/24", DHCPMode: "proxy", StateDir: "/srv/pictl"},
	} {
		data, err := InitTemplate(o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseDocument("cluster.yaml", data)
		if err != nil {
			t.Fatal(err)
		}
		if out := docBytes(t, d); string(out) != string(data) {
			t.Errorf("template changed by a round trip:\n%s", lineDiff(string(data), string(out)))
		}
	}
}

// TestDocumentIndentKept: a file indented by 4 stays indented by 4.
func TestDocumentIndentKept(t *testing.T) {
	in := "controller:\n    address: 10.99.0.1/24\n\n    # the boot bridge\n    interfaces: [br0]\ndhcp:\n    range: 10.99.0.100-10.99.0.199\n"
	d, err := ParseDocument("cluster.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set("2h", "dhcp", "lease"); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(in, "10.99.0.199\n", "10.99.0.199\n    lease: 2h\n", 1)
	if out := docBytes(t, d); string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestDocumentSetAndDeleteErrors(t *testing.T) {
	d, err := ParseDocument("cluster.yaml", []byte("controller:\n  address: 10.99.0.1/24\nnodes:\ndiscovery: record\nbase: &b {role: web}\nalias: *b\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = d.Delete("nodes", "pi9")
	var nf interface{ NotFound() bool }
	if !errors.As(err, &nf) || !nf.NotFound() {
		t.Errorf("Delete of an absent node: %v, want a NotFound error", err)
	}
	if err := d.Delete("volumes", "www"); !errors.As(err, &nf) {
		t.Errorf("Delete under an absent section: %v, want a NotFound error", err)
	}
	if err := d.Set("web", "discovery", "x"); err == nil || !strings.Contains(err.Error(), "discovery is a single value, not a mapping") {
		t.Errorf("Set through a scalar: %v", err)
	}
	if err := d.Set("web", "alias", "role"); err == nil || !strings.Contains(err.Error(), "alias") {
		t.Errorf("Set through an alias: %v", err)
	}
	if err := d.Set(3.5, "ports", "tftp"); err == nil {
		t.Error("Set of a float: no error")
	}
	if err := d.Set("x"); err == nil {
		t.Error("Set with no path: no error")
	}
	// A null section becomes a mapping.
	if err := d.Set("dc:a6:32:01:36:c1", "nodes", "pi1", "mac"); err != nil {
		t.Fatal(err)
	}
	n, ok := d.Get("nodes", "pi1", "mac")
	if !ok || n.Value != "dc:a6:32:01:36:c1" {
		t.Errorf("Get after Set = %v, %v", n, ok)
	}
	if n, ok := d.Get("alias", "role"); !ok || n.Value != "web" {
		t.Errorf("Get through an alias = %v, %v", n, ok)
	}
	if _, ok := d.Get("nodes", "pi1", "mac", "deeper"); ok {
		t.Error("Get below a scalar found something")
	}
}

func TestDocumentSetValueTypes(t *testing.T) {
	d, err := ParseDocument("cluster.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		v    any
		path []string
	}{
		{"10.99.0.1/24", []string{"controller", "address"}},
		{uint16(6969), []string{"ports", "tftp"}},
		{8080, []string{"ports", "balancer"}},
		{DefaultLease, []string{"dhcp", "lease"}},
		{AddrRange{First: mustAddr("10.99.0.100"), Last: mustAddr("10.99.0.110")}, []string{"dhcp", "range"}},
		{"yes", []string{"roles", "true", "description"}}, // a string that looks like a bool stays a string
		{"line one\nline two", []string{"roles", "multi", "description"}},
	} {
		if err := d.Set(s.v, s.path...); err != nil {
			t.Fatalf("Set(%v): %v", s.v, err)
		}
	}
	out := docBytes(t, d)
	want := `controller:
  address: 10.99.0.1/24
ports:
  tftp: 6969
  balancer: 8080
dhcp:
  range: 10.99.0.100-10.99.0.110
  lease: 1h
roles:
  "true":
    description: "yes"
  multi:
    description: |-
      line one
      line two
`
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	var v map[string]any
	if err := yaml.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	if got := v["roles"].(map[string]any)["true"].(map[string]any)["description"]; got != "yes" {
		t.Errorf("a generic YAML reader sees %#v, want the string yes", got)
	}
}

// lineDiff shows the first differing line of two texts.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + itoa(i+1) + ":\n-" + x + "\n+" + y
		}
	}
	return ""
}

func TestDocumentCommentsOnlyFile(t *testing.T) {
	in := "# written by hand\n\n# more\n"
	d, err := ParseDocument("cluster.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := d.Bytes(); err != nil || string(out) != in {
		t.Errorf("unedited: %q, %v", out, err)
	}
	if err := d.Set("10.99.0.1/24", "controller", "address"); err != nil {
		t.Fatal(err)
	}
	want := "# written by hand\n\n# more\n\ncontroller:\n  address: 10.99.0.1/24\n"
	if out := docBytes(t, d); string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
}
