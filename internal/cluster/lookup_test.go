package cluster

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const lookupYAML = `
controller: {address: 10.99.0.1/24}
dhcp: {range: 10.99.0.100-10.99.0.199}
images:
  rpi-os: {arch: arm64}
nodes:
  pi10: {mac: dc:a6:32:01:36:10, serial: 100000009FFEFD10, ip: 10.99.0.10}
  pi2: {macs: [dc:a6:32:01:36:02, dc:a6:32:01:36:f2], serial: 9ffefd02}
  pi1: {mac: dc:a6:32:01:36:01}
roles:
  metrics: {}
`

func TestLookups(t *testing.T) {
	c, err := Load("cluster.yaml", []byte(lookupYAML))
	if err != nil {
		t.Fatal(err)
	}
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	for _, tc := range []struct {
		what string
		name string
		ok   bool
		find func() (string, *Node, bool)
	}{
		{"MAC", "pi10", true, func() (string, *Node, bool) { return c.NodeByMAC(mac("DC:A6:32:01:36:10")) }},
		{"second MAC", "pi2", true, func() (string, *Node, bool) { return c.NodeByMAC(mac("dc:a6:32:01:36:f2")) }},
		{"unknown MAC", "", false, func() (string, *Node, bool) { return c.NodeByMAC(mac("dc:a6:32:01:36:99")) }},
		{"serial 8 for 16", "pi10", true, func() (string, *Node, bool) { return c.NodeBySerial("9ffefd10") }},
		{"serial 16 for 8", "pi2", true, func() (string, *Node, bool) { return c.NodeBySerial("100000009FFEFD02") }},
		{"short serial", "", false, func() (string, *Node, bool) { return c.NodeBySerial("fd02") }},
		{"IP", "pi10", true, func() (string, *Node, bool) { return c.NodeByIP(netip.MustParseAddr("10.99.0.10")) }},
		{"IPv4-mapped IP", "pi10", true, func() (string, *Node, bool) { return c.NodeByIP(netip.MustParseAddr("::ffff:10.99.0.10")) }},
		{"unknown IP", "", false, func() (string, *Node, bool) { return c.NodeByIP(netip.MustParseAddr("10.99.0.11")) }},
	} {
		name, n, ok := tc.find()
		if name != tc.name || ok != tc.ok || (n != nil) != ok {
			t.Errorf("%s: got %q, %v, %v; want %q, %v", tc.what, name, n, ok, tc.name, tc.ok)
		}
	}
	if got := c.NodeNames(); !slices.Equal(got, []string{"pi1", "pi2", "pi10"}) {
		t.Errorf("NodeNames = %v", got)
	}
	if got := c.Nodes["pi2"].PrimaryMAC().String(); got != "dc:a6:32:01:36:02" {
		t.Errorf("PrimaryMAC = %s", got)
	}
	if got := c.Nodes["pi10"].SerialPrefix(); got != "9ffefd10" {
		t.Errorf("SerialPrefix = %s", got)
	}
	if name, _, ok := c.DefaultImage(); !ok || name != "rpi-os" {
		t.Errorf("DefaultImage (the only one) = %q, %v", name, ok)
	}
	if !c.RoleKnown("web") || !c.RoleKnown("metrics") || c.RoleKnown("nope") {
		t.Error("RoleKnown wrong")
	}
	if got := strings.Join(c.RoleNames(), ","); got != "web,db,lb,router,metrics" {
		t.Errorf("RoleNames = %s", got)
	}
	if got := c.Subnet().String(); got != "10.99.0.0/24" {
		t.Errorf("Subnet = %s", got)
	}
}

func TestDefaultsApplied(t *testing.T) {
	c, err := Load("cluster.yaml", []byte("controller: {address: 10.99.0.1/24}\nvolumes: {www: }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ports != (Ports{TFTP: 69, NFS: 2049, API: 0, Balancer: 80, Agent: 4390}) {
		t.Errorf("ports = %+v", c.Ports)
	}
	if c.Controller.StateDir != "/var/lib/pictl" || c.Controller.APISocket != "/run/pictl/pictl.sock" {
		t.Errorf("controller = %+v", c.Controller)
	}
	if c.DHCP.Mode != DHCPFull || c.DHCP.Lease.String() != "1h" || c.DHCP.Pi3ReplyDelay().String() != "2s" || c.Discovery != DiscoveryRecord {
		t.Errorf("dhcp = %+v, discovery = %s", c.DHCP, c.Discovery)
	}
	if c.Nodes == nil || c.Images == nil || c.Roles == nil {
		t.Error("nil maps after Load")
	}
	if got := c.Volumes["www"]; got == nil || got.Path != "/var/lib/pictl/volumes/www" {
		t.Errorf("volume www = %+v", got)
	}
}

func TestValidateInCode(t *testing.T) {
	c := &Cluster{
		Controller: Controller{Address: netip.MustParsePrefix("10.99.0.1/24")},
		DHCP:       DHCP{Range: AddrRange{First: netip.MustParseAddr("10.99.0.100"), Last: netip.MustParseAddr("10.99.0.199")}},
		Nodes: map[string]*Node{
			"a": {MACs: []net.HardwareAddr{{2, 0, 0, 0, 0, 1}}, Role: "web"},
			"b": {MACs: []net.HardwareAddr{{2, 0, 0, 0, 0, 1}}, IP: netip.MustParseAddr("10.99.1.5")},
		},
	}
	err := c.Validate()
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("Validate = %v, want 2 problems", err)
	}
	want := "duplicate MAC 02:00:00:00:00:01 (also node a); give each node its own MAC\n" +
		"node b's ip 10.99.1.5 is outside the subnet 10.99.0.0/24; use an address in 10.99.0.1-10.99.0.254 (controller.address 10.99.0.1/24)"
	if err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	c.Nodes["b"].MACs[0] = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	c.Nodes["b"].IP = netip.MustParseAddr("10.99.0.5")
	if err := c.Validate(); err != nil {
		t.Errorf("valid cluster: %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "cluster.yaml", Line: 12, Column: 7, Msg: "m", Fix: "f"}, "cluster.yaml:12:7: m; f"},
		{Error{File: "cluster.yaml", Line: 3, Msg: "m"}, "cluster.yaml:3: m"},
		{Error{File: "cluster.yaml", Msg: "m"}, "cluster.yaml: m"},
		{Error{Msg: "m", Fix: "f"}, "m; f"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	var e *Error
	if err := (ErrorList{{Msg: "a"}, {Msg: "b"}}); !errors.As(error(err), &e) || e.Msg != "a" {
		t.Error("errors.As does not find the first *Error in an ErrorList")
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct {
		sec       section
		key, want string
	}{
		{secNode, "rol", "role"},
		{secNode, "MAC", "mac"},
		{secNode, "ip-address", "ip"},
		{secNode, "imgae", "image"},
		{secNode, "colour", ""},
		{secTop, "node", "nodes"},
		{secTop, "controler", "controller"},
		{secDHCP, "lease_time", "lease"},
		{secController, "interfaces ", "interfaces"},
		{secController, "x", ""},
	} {
		if got := suggest(tc.sec, tc.key); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// A role defined by a file in roles/ beside cluster.yaml may be given to a
// node without declaring it under roles:.
func TestUserRoleFilesAreKnown(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "roles", "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"roles/shop.yaml", "roles/cache/role.yaml", "roles/shop.conf.tmpl", "roles/.shop.yaml.swp"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	doc := lookupYAML + "  x: {}\n"
	doc = strings.Replace(doc, "pi1: {mac: dc:a6:32:01:36:01}", "pi1: {mac: dc:a6:32:01:36:01, role: shop}", 1)
	c, err := Load(filepath.Join(dir, "cluster.yaml"), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.RoleNames(), []string{"web", "db", "lb", "router", "cache", "metrics", "shop", "x"}; !slices.Equal(got, want) {
		t.Errorf("RoleNames = %q, want %q", got, want)
	}
	// Elsewhere, the same cluster.yaml names an unknown role.
	_, err = Load(filepath.Join(t.TempDir(), "cluster.yaml"), []byte(doc))
	if err == nil || !strings.Contains(err.Error(), `node pi1's role "shop" is unknown`) {
		t.Errorf("without roles/shop.yaml: %v", err)
	}
}
