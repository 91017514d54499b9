package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// InitOptions are the settings `pictl init` writes into a new cluster.yaml.
type InitOptions struct {
	Interfaces []string // boot network interface(s); none: left for the person to fill in
	Address    string   // the controller's address with prefix length (CIDR), required
	DHCPMode   string   // full (default), proxy or off
	Range      string   // FIRST-LAST; full mode default: DefaultRange of Address
	StateDir   string   // default DefaultStateDir
}

// InitTemplate writes a commented cluster.yaml a newcomer can read and
// edit: the given settings, defaults shown, and commented-out examples of
// an image, a node, a volume and a role. The result is validated before it
// is returned; option errors name the option.
func InitTemplate(o InitOptions) ([]byte, error) {
	if strings.TrimSpace(o.Address) == "" {
		return nil, fmt.Errorf("address: give this controller's address on the boot network with prefix length, e.g. 10.99.0.1/24")
	}
	addr, err := netip.ParsePrefix(strings.TrimSpace(o.Address))
	if err != nil {
		if a, err := netip.ParseAddr(strings.TrimSpace(o.Address)); err == nil {
			return nil, fmt.Errorf("address %s has no prefix length: write it like %s/24", o.Address, a)
		}
		return nil, fmt.Errorf("address %q is not an address with prefix length: write it like 10.99.0.1/24", o.Address)
	}
	if !addr.Addr().Is4() {
		return nil, fmt.Errorf("address %s is not IPv4: netbooting uses DHCPv4; write it like 10.99.0.1/24", o.Address)
	}
	mode := DHCPMode(strings.TrimSpace(o.DHCPMode))
	if mode == "" {
		mode = DefaultDHCPMode
	}
	if !slices.Contains(DHCPModes(), string(mode)) {
		return nil, fmt.Errorf("dhcp mode %q: %s", o.DHCPMode, enumFix(string(mode), DHCPModes()))
	}
	stateDir := strings.TrimSpace(o.StateDir)
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if !filepath.IsAbs(stateDir) {
		return nil, fmt.Errorf("state dir %q: write an absolute path, e.g. %s", o.StateDir, DefaultStateDir)
	}
	var rng string
	switch {
	case strings.TrimSpace(o.Range) != "":
		if mode != DHCPFull {
			return nil, fmt.Errorf("range: only full DHCP mode hands out addresses; drop --range in %s mode", mode)
		}
		r, err := ParseAddrRange(o.Range)
		if err != nil {
			return nil, fmt.Errorf("range: %w", err)
		}
		rng = r.String()
	case mode == DHCPFull:
		rng = DefaultRange(addr).String()
	}
	var ifaces []string
	for _, i := range o.Interfaces {
		for _, part := range strings.Split(i, ",") {
			if part = strings.TrimSpace(part); part != "" {
				ifaces = append(ifaces, quoteScalar(part))
			}
		}
	}
	example := addrAdd(addr.Masked().Addr(), 13)
	if example == addr.Addr() {
		example = addrAdd(example, 1)
	}
	tmpl, err := template.New("cluster.yaml").Parse(initTemplateText)
	if err != nil {
		return nil, fmt.Errorf("init template: %w", err)
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, map[string]any{
		"Interfaces": strings.Join(ifaces, ", "),
		"Address":    addr.String(),
		"Mode":       string(mode),
		"Range":      rng,
		"Router":     addr.Addr().String(),
		"StateDir":   quoteScalar(stateDir),
		"Example":    example.String(),
		"Defaults": map[string]any{
			"APISocket": DefaultAPISocket, "TFTP": DefaultTFTPPort, "NFS": DefaultNFSPort,
			"Balancer": DefaultBalancerPort, "Agent": DefaultAgentPort, "Lease": DefaultLease, "Pi3Delay": DefaultPi3Delay,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("init template: %w", err)
	}
	data := buf.Bytes()
	if _, err := Load("cluster.yaml", data); err != nil {
		var list, found ErrorList
		if !errors.As(err, &found) {
			return nil, err
		}
		for _, e := range found {
			list = append(list, &Error{Msg: e.Msg, Fix: e.Fix}) // positions in a file not yet written help no one
		}
		return nil, list
	}
	return data, nil
}

// quoteScalar writes s as a YAML scalar, quoted only when it must be.
func quoteScalar(s string) string {
	n := &yaml.Node{}
	n.SetString(s)
	out, err := yaml.Marshal(n)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(out), "\n")
}

const initTemplateText = `# cluster.yaml: the desired state of a pictl netboot cluster.
#
# pictl serve follows this file: save it and the controller reloads within a
# second (an invalid file is reported and the last good state stays in force).
# The pictl commands (node add, role set, ...) edit it for you and keep your
# comments. A setting left out takes the default shown next to it.

# The host pictl runs on.
controller:
  # Network interface(s) the nodes boot on; the DHCP server listens here.
{{- if .Interfaces}}
  interfaces: [{{.Interfaces}}]
{{- else}}
  # interfaces: [eth0]
{{- end}}
  # This host's address on that network, with prefix length. Node
  # addresses must lie in this subnet.
  address: {{.Address}}
  # Images, node filesystems and the runtime database live here.
  state_dir: {{.StateDir}}
  # The runtime API's unix socket (pictl node ls asks it):
  # api_socket: {{.Defaults.APISocket}}

# Service ports (defaults shown). Nodes are told the TFTP and NFS ports.
# ports:
#   tftp: {{.Defaults.TFTP}}
#   nfs: {{.Defaults.NFS}}
#   balancer: {{.Defaults.Balancer}}   # the HTTP load balancer in front of the web nodes
#   agent: {{.Defaults.Agent}}     # where the nodes' agents reach the controller
#   api: 0         # TCP port for the API; 0 = unix socket only

# DHCP on the boot network. mode is one of
#   full:  pictl hands out addresses: the nodes' own (ip:) and a pool;
#   proxy: another DHCP server (e.g. your router) hands out addresses and
#          pictl answers only the netboot part;
#   off:   pictl runs no DHCP server.
dhcp:
  mode: {{.Mode}}
{{- if .Range}}
  # Pool for machines without an address of their own (full mode only).
  range: {{.Range}}
{{- end}}
  # Default gateway and DNS servers handed to the nodes (full mode; none if
  # left out):
  # router: {{.Router}}
  # dns: [{{.Router}}]
  lease: {{.Defaults.Lease}}
  # A Pi 3's boot ROM fails on an instant DHCP reply; pictl waits this long:
  # pi3_delay: {{.Defaults.Pi3Delay}}

# What to do with a machine that asks to netboot but is not under nodes:
#   record: remember it; pictl node ls shows it, pictl node add adopts it;
#   boot:   boot it with the default image;
#   ignore: say nothing.
discovery: record

# Bootable images (pictl image import NAME FILE adds them), e.g.
#   rpi-os: {arch: arm64, default: true}
images: {}

# The machines that netboot from this controller, one line each. Add them
# with  pictl node add NAME --mac MAC [--serial S] [--image I] [--role R] [--ip A]
# or by hand, e.g.
#   pi3: {mac: dc:a6:32:01:36:c2, serial: 9ffefdef, image: rpi-os, role: web, ip: {{.Example}}}
# The name becomes the hostname. Roles: web, db, lb, router (built in) or
# one declared under roles:.
nodes: {}

# Shared exports that every node (or only the roles: or nodes: listed) may
# mount. www is the docroot the web role serves on port 8000; pictl init
# put an index page in it (its files live in <state_dir>/volumes/www).
volumes:
  www: {readonly: true, roles: [web]}

# Roles of your own, besides the built-in web, db, lb and router, e.g.
#   monitoring: {description: Prometheus and Grafana}
roles: {}

# The built-in balancer on ports.balancer fronts the web nodes whose role
# is active and whose health check passes; it needs no settings. Optional:
# balancer:
#   policy: least-conn        # or round-robin
#   sticky_cookie: PICTLNODE  # pin a browser to one node
#   weights: {pi3: 2}         # pi3 takes twice the share
#   check: {path: /, interval: 2s}   # overrides the web role's own check
`
