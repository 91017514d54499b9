package tftpd

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

func routeFixture() (*fakeNodes, fakeNeighbors) {
	nodes := &fakeNodes{
		nodes: []Node{
			{Name: "pi3", Serial: "0a1b2c3d", MAC: mustMAC("b8:27:eb:1b:2c:3d")},
			{Name: "pi4", Serial: "d2e4f6a8", MAC: mustMAC("dc:a6:32:01:36:c2")},
			{Name: "pi5", Serial: "a1b2c3d4e5f60718", MAC: mustMAC("2c:cf:67:00:00:05")},
			{Name: "x86", MAC: mustMAC("52:54:00:12:34:56")},
		},
		ips: map[netip.Addr]string{
			netip.MustParseAddr("10.0.0.4"): "pi4",
			netip.MustParseAddr("10.0.0.5"): "x86",
		},
	}
	neigh := fakeNeighbors{
		netip.MustParseAddr("10.0.0.7"): mustMAC("b8:27:eb:1b:2c:3d"),
		netip.MustParseAddr("10.0.0.9"): mustMAC("00:11:22:33:44:55"),
	}
	return nodes, neigh
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		name, client string
		node, path   string // expected target
		unknown      string // expected UnknownClientError key ("" = none)
		unknownMAC   string
	}{
		{name: "0a1b2c3d/start.elf", client: "10.0.0.99", node: "pi3", path: "start.elf"},
		{name: "0a1b2c3d/overlays/vc4-kms-v3d.dtbo", client: "10.0.0.99", node: "pi3", path: "overlays/vc4-kms-v3d.dtbo"},
		{name: "e5f60718/config.txt", client: "10.0.0.99", node: "pi5", path: "config.txt"},
		{name: "dc-a6-32-01-36-c2/start4.elf", client: "10.0.0.99", node: "pi4", path: "start4.elf"},
		{name: "start4.elf", client: "10.0.0.4", node: "pi4", path: "start4.elf"},
		{name: "overlays/vc4-kms-v3d.dtbo", client: "10.0.0.4", node: "pi4", path: "overlays/vc4-kms-v3d.dtbo"},
		{name: "boot.ipxe", client: "10.0.0.5", node: "x86", path: "boot.ipxe"},
		// A serial-prefixed request wins over the client's address.
		{name: "0a1b2c3d/start.elf", client: "10.0.0.4", node: "pi3", path: "start.elf"},
		// No lease or reservation: the neighbour table's MAC finds the node.
		{name: "bootcode.bin", client: "10.0.0.7", node: "pi3", path: "bootcode.bin"},
		// Prefix-like but not a prefix: the whole name is the path.
		{name: "DEADBEEF/start.elf", client: "10.0.0.4", node: "pi4", path: "DEADBEEF/start.elf"},
		{name: "0a1b2c3d", client: "10.0.0.4", node: "pi4", path: "0a1b2c3d"},
		{name: "ffffffff/start4.elf", client: "10.0.0.4", unknown: "serial ffffffff"},
		{name: "00-11-22-33-44-55/start4.elf", client: "10.0.0.4", unknown: "mac 00:11:22:33:44:55"},
		{name: "bootcode.bin", client: "10.0.0.8", unknown: "ip 10.0.0.8"},
		{name: "bootcode.bin", client: "10.0.0.9", unknown: "ip 10.0.0.9", unknownMAC: "00:11:22:33:44:55"},
	}
	nodes, neigh := routeFixture()
	routes := DefaultRoutes(nodes, neigh)
	for _, tt := range tests {
		req := Request{Name: tt.name, Client: netip.MustParseAddr(tt.client)}
		got, err := resolveWith(routes, req)
		if tt.unknown != "" {
			var u *UnknownClientError
			if !errors.As(err, &u) || u.Key.String() != tt.unknown || macString(u.MAC) != tt.unknownMAC {
				t.Errorf("%s from %s: got %+v, %v; want unknown %s (mac %q)", tt.name, tt.client, got, err, tt.unknown, tt.unknownMAC)
			}
			continue
		}
		if err != nil || got.Node.Name != tt.node || got.Path != tt.path {
			t.Errorf("%s from %s: got node %q path %q, %v; want %q %q", tt.name, tt.client, got.Node.Name, got.Path, err, tt.node, tt.path)
		}
	}
}

func TestRouteLookupErrorIsNotUnknown(t *testing.T) {
	nodes, neigh := routeFixture()
	nodes.err = errors.New("database closed")
	_, err := resolveWith(DefaultRoutes(nodes, neigh), Request{Name: "bootcode.bin", Client: netip.MustParseAddr("10.0.0.4")})
	var u *UnknownClientError
	if err == nil || errors.As(err, &u) {
		t.Fatalf("lookup failure became %v; want a plain error", err)
	}
}

// TestRoutesConsultNodesPerRequest: a changed answer from Nodes (a reload)
// applies to the next request.
func TestRoutesConsultNodesPerRequest(t *testing.T) {
	nodes, neigh := routeFixture()
	routes := DefaultRoutes(nodes, neigh)
	req := Request{Name: "config.txt", Client: netip.MustParseAddr("10.0.0.4")}
	if got, _ := resolveWith(routes, req); got.Node.Image.Name != "" {
		t.Fatalf("image %q before reload", got.Node.Image.Name)
	}
	n := nodes.nodes[1]
	n.Image.Name = "rpi-os-new"
	nodes.set(n)
	if got, _ := resolveWith(routes, req); got.Node.Image.Name != "rpi-os-new" {
		t.Fatalf("image %q after reload; want rpi-os-new", got.Node.Image.Name)
	}
}

func resolveWith(routes []Route, req Request) (Target, error) {
	for _, r := range routes {
		if t, ok, err := r.Resolve(context.Background(), req); ok {
			return t, err
		}
	}
	return Target{}, ErrNotFound
}
