package controller

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pictl/pictl/dhcpd"
	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/tftpd"
)

const directoryYAML = `
controller: {interface: br0, address: 10.99.0.1/24, state_dir: STATE}
dhcp: {mode: full, range: 10.99.0.100-10.99.0.199}
discovery: DISCOVERY
images:
  bb: {arch: amd64, default: true}
  pi: {arch: arm64, boot: PIBOOT, root: /srv/pi-root}
nodes:
  pc1: {mac: 52:54:00:00:00:01, ip: 10.99.0.11, role: web}
  pc2: {mac: 52:54:00:00:00:02, image: pi, netboot: false}
  pc3: {mac: 52:54:00:00:00:03, image: pi}
volumes:
  www: {readonly: true, roles: [web]}
  scratch: {}
`

func testDirectory(t *testing.T, discovery string) *nodeDirectory {
	t.Helper()
	dir := t.TempDir()
	piBoot := filepath.Join(dir, "piboot")
	os.MkdirAll(piBoot, 0o755)
	os.WriteFile(filepath.Join(piBoot, "start4.elf"), []byte("x"), 0o644)
	y := directoryYAML
	for k, v := range map[string]string{"STATE": dir, "DISCOVERY": discovery, "PIBOOT": piBoot} {
		y = strings.ReplaceAll(y, k, v)
	}
	cl, err := cluster.Load("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	return &nodeDirectory{
		cluster: func() *cluster.Cluster { return cl },
		images:  &images.Store{Dir: filepath.Join(dir, "images")},
		leases: func() []dhcpd.Lease {
			return []dhcpd.Lease{
				{IP: netip.MustParseAddr("10.99.0.103"), MAC: mac("52:54:00:00:00:03"), State: dhcpd.LeaseBound},
				{IP: netip.MustParseAddr("10.99.0.109"), MAC: mac("52:54:00:00:00:09"), State: dhcpd.LeaseBound},
			}
		},
		neigh: func(a netip.Addr) (net.HardwareAddr, bool) {
			if a == netip.MustParseAddr("10.99.0.150") {
				return mac("52:54:00:00:00:01"), true
			}
			return nil, false
		},
	}
}

func TestDirectoryFindsNodesTheSameWayForEveryServer(t *testing.T) {
	for _, tc := range []struct {
		discovery string
		ip        string
		want      string // node name, "" = none
	}{
		{"record", "10.99.0.11", "pc1"},  // reservation
		{"record", "10.99.0.103", "pc3"}, // pictl's lease
		{"record", "10.99.0.150", "pc1"}, // neighbour table (proxy mode)
		{"record", "10.99.0.109", ""},    // leased to an unknown client
		{"boot", "10.99.0.109", "new-525400000009"},
		{"record", "10.99.0.77", ""},
	} {
		d := testDirectory(t, tc.discovery)
		n, ok, err := d.LookupNode(context.Background(), tftpd.NodeKey{IP: netip.MustParseAddr(tc.ip)})
		if err != nil || ok != (tc.want != "") || n.Name != tc.want {
			t.Errorf("%s/tftpd %s: got %q %v %v, want %q", tc.discovery, tc.ip, n.Name, ok, err, tc.want)
		}
		nn, ok := d.ByAddr(netip.MustParseAddr(tc.ip))
		if ok != (tc.want != "") || nn.Name != tc.want {
			t.Errorf("%s/nfsd %s: got %q %v, want %q", tc.discovery, tc.ip, nn.Name, ok, tc.want)
		}
		if tc.want != "" {
			if byName, ok := d.ByName(tc.want); !ok || byName.ImageRoot != nn.ImageRoot {
				t.Errorf("%s: ByName(%s) = %+v %v, ByAddr gave %+v", tc.discovery, tc.want, byName, ok, nn)
			}
		}
	}
}

func TestDirectoryImagesAndVolumes(t *testing.T) {
	d := testDirectory(t, "record")
	ctx := context.Background()
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

	pc1, _, _ := d.LookupNode(ctx, tftpd.NodeKey{MAC: mac("52:54:00:00:00:01")})
	if pc1.Image.Name != "bb" || pc1.Image.Kind != tftpd.ImageKernelInitrd || pc1.Image.BootDir != d.images.BootDir("bb") {
		t.Errorf("pc1 (default image, from the store): %+v", pc1.Image)
	}
	pc3, _, _ := d.LookupNode(ctx, tftpd.NodeKey{MAC: mac("52:54:00:00:00:03")})
	if pc3.Image.Kind != tftpd.ImagePi || !pc3.Netboot {
		t.Errorf("pc3 (hand-made Pi boot dir): %+v", pc3)
	}
	pc2, ok, _ := d.LookupNode(ctx, tftpd.NodeKey{MAC: mac("52:54:00:00:00:02")})
	if !ok || pc2.Netboot {
		t.Errorf("pc2 has netboot off: %+v", pc2)
	}
	if _, ok := d.ByName("pc2"); ok {
		t.Error("nfsd may mount the root of a node with netboot off")
	}

	n1, _ := d.ByName("pc1")
	n3, _ := d.ByName("pc3")
	if len(n1.Volumes) != 2 || len(n3.Volumes) != 1 || n3.Volumes[0] != "scratch" {
		t.Errorf("volumes: pc1 (web) %v, pc3 %v", n1.Volumes, n3.Volumes)
	}
	// Volumes follow the role in force, not the one cluster.yaml asks for:
	// pc1's change refused, it still runs web; pc3 switched to web.
	d.roleLayer = func(node string) (string, string, bool) {
		switch node {
		case "pc1":
			return "/layers/web", "web", true
		case "pc3":
			return "/layers/web", "web", true
		}
		return "", "", false
	}
	if n1, _ := d.ByName("pc1"); len(n1.Volumes) != 2 || n1.RoleLayer != "/layers/web" {
		t.Errorf("pc1 still web: volumes %v, layer %q", n1.Volumes, n1.RoleLayer)
	}
	if n3, _ := d.ByName("pc3"); len(n3.Volumes) != 2 {
		t.Errorf("pc3 now web: volumes %v", n3.Volumes)
	}
	d.roleLayer = nil
	if n3.ImageRoot != "/srv/pi-root" {
		t.Errorf("pc3 root %q", n3.ImageRoot)
	}
	if v, ok := d.Volume("www"); !ok || !v.ReadOnly || v.Path == "" {
		t.Errorf("volume www: %+v %v", v, ok)
	}
	if _, ok := d.ByName("new-525400000009"); ok {
		t.Error("a guest name resolves while the discovery policy is record")
	}
}

// The per-call export check of nfsd reads the lease and neighbour tables
// once per address and addrMACTTL, not once per call.
func TestDirectoryRemembersAddressesForAWhile(t *testing.T) {
	d := testDirectory(t, "record")
	clock := time.Unix(1000, 0)
	d.macs.now = func() time.Time { return clock }
	asked := 0
	neigh := d.neigh
	d.neigh = func(a netip.Addr) (net.HardwareAddr, bool) { asked++; return neigh(a) }
	proxied, stranger := netip.MustParseAddr("10.99.0.150"), netip.MustParseAddr("10.99.0.77")
	for _, step := range []struct {
		after     time.Duration
		addr      netip.Addr
		wantNode  string
		wantAsked int
	}{
		{0, proxied, "pc1", 1},
		{time.Second, proxied, "pc1", 1},
		{addrMACTTL, proxied, "pc1", 2},
		{0, stranger, "", 3},
		{addrUnknownTTL / 2, stranger, "", 3},
		{addrUnknownTTL, stranger, "", 4},
	} {
		clock = clock.Add(step.after)
		n, ok := d.ByAddr(step.addr)
		if ok != (step.wantNode != "") || n.Name != step.wantNode || asked != step.wantAsked {
			t.Fatalf("%s after %v: node %q %v, neighbour table read %d times; want %q, %d", step.addr, step.after, n.Name, ok, asked, step.wantNode, step.wantAsked)
		}
	}
}
