package cluster

import (
	"net/netip"
	"strings"
	"testing"
)

func TestInitTemplateGolden(t *testing.T) {
	data, err := InitTemplate(InitOptions{Interfaces: []string{"eth1"}, Address: "10.99.0.1/24"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "init/full.golden", data)

	// What `pictl node add` then does to it.
	d, err := ParseDocument("cluster.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		v    any
		path []string
	}{
		{"dc:a6:32:01:36:c2", []string{"nodes", "pi3", "mac"}},
		{"web", []string{"nodes", "pi3", "role"}},
		{"10.99.0.13", []string{"nodes", "pi3", "ip"}},
		{"dc:a6:32:01:36:c4", []string{"nodes", "pi4", "mac"}},
		{map[string]any{"arch": "arm64", "default": true}, []string{"images", "rpi-os"}},
		{"rpi-os", []string{"nodes", "pi4", "image"}},
	} {
		if err := d.Set(s.v, s.path...); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "init/full.nodes-added.golden", docBytes(t, d))

	data, err = InitTemplate(InitOptions{Interfaces: []string{"br0,br1"}, Address: "192.168.1.10/24", DHCPMode: "proxy", StateDir: "/srv/pictl"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "init/proxy.golden", data)
}

func TestInitTemplateOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    InitOptions
		want string // an error containing this, or "" for success
		rng  string // expected dhcp.range
	}{
		{"default range /24", InitOptions{Address: "10.99.0.1/24"}, "", "10.99.0.100-10.99.0.199"},
		{"default range avoids controller", InitOptions{Address: "10.99.0.150/24"}, "", "10.99.0.100-10.99.0.149"},
		{"default range small subnet", InitOptions{Address: "10.99.0.1/28"}, "", "10.99.0.8-10.99.0.14"},
		{"default range /16", InitOptions{Address: "172.16.5.1/16"}, "", "172.16.0.100-172.16.0.199"},
		{"explicit range", InitOptions{Address: "10.99.0.1/24", Range: "10.99.0.20-10.99.0.29"}, "", "10.99.0.20-10.99.0.29"},
		{"off mode", InitOptions{Address: "10.99.0.1/24", DHCPMode: "off"}, "", ""},
		{"interface name is quoted when YAML needs it", InitOptions{Address: "10.99.0.1/24", Interfaces: []string{"#lab"}}, "", "10.99.0.100-10.99.0.199"},
		{"bad interface name", InitOptions{Address: "10.99.0.1/24", Interfaces: []string{"en p0"}}, `"en p0" is not a network interface name`, ""},
		{"no address", InitOptions{}, "address: give this controller's address", ""},
		{"no prefix", InitOptions{Address: "10.99.0.1"}, "has no prefix length: write it like 10.99.0.1/24", ""},
		{"bad mode", InitOptions{Address: "10.99.0.1/24", DHCPMode: "proxi"}, "did you mean proxy?", ""},
		{"range in proxy mode", InitOptions{Address: "10.99.0.1/24", DHCPMode: "proxy", Range: "10.99.0.100-10.99.0.199"}, "drop --range in proxy mode", ""},
		{"bad range", InitOptions{Address: "10.99.0.1/24", Range: "10.99.0.100"}, "write FIRST-LAST", ""},
		{"range outside subnet", InitOptions{Address: "10.99.0.1/24", Range: "10.98.0.100-10.98.0.199"}, "dhcp.range 10.98.0.100-10.98.0.199 is outside the subnet 10.99.0.0/24", ""},
		{"relative state dir", InitOptions{Address: "10.99.0.1/24", StateDir: "pictl"}, "write an absolute path", ""},
		{"ipv6", InitOptions{Address: "fd00::1/64"}, "is not IPv4", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := InitTemplate(tc.o)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one containing %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "cluster.yaml:") {
					t.Errorf("error names a position in a file never written: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := Load("cluster.yaml", data)
			if err != nil {
				t.Fatalf("template invalid: %v\n%s", err, data)
			}
			if got := c.DHCP.Range.String(); got != tc.rng {
				t.Errorf("range = %q, want %q", got, tc.rng)
			}
			if len(tc.o.Interfaces) > 0 && strings.Join(c.Controller.Interfaces, ",") != strings.Join(tc.o.Interfaces, ",") {
				t.Errorf("interfaces = %q", c.Controller.Interfaces)
			}
		})
	}
}

func TestDefaultRange(t *testing.T) {
	for _, tc := range []struct{ ctl, want string }{
		{"10.99.0.1/24", "10.99.0.100-10.99.0.199"},
		{"10.99.0.100/24", "10.99.0.101-10.99.0.199"},
		{"10.99.0.199/24", "10.99.0.100-10.99.0.198"},
		{"10.0.0.1/30", "10.0.0.2-10.0.0.2"},
		{"10.0.0.2/30", "10.0.0.1-10.0.0.1"},
	} {
		if got := DefaultRange(netip.MustParsePrefix(tc.ctl)).String(); got != tc.want {
			t.Errorf("DefaultRange(%s) = %s, want %s", tc.ctl, got, tc.want)
		}
	}
}
