package cluster

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Validate checks a Cluster built in code (Load validates files itself).
// Settings left at their zero value count as their defaults. Problems are
// returned as an ErrorList without positions.
func (c *Cluster) Validate() error {
	s := newSource("")
	c.validate(s)
	return s.errs.errorsOrNil()
}

// validator checks meaning: references, subnets, duplicates. Values the
// decoder could not read are in s.bad and are not reported again.
type validator struct {
	c      *Cluster
	s      *source
	subnet netip.Prefix // valid only when controller.address is
}

func (c *Cluster) validate(s *source) {
	v := &validator{c: c, s: s}
	v.controller()
	v.ports()
	v.dhcp()
	v.images()
	v.roles()
	v.nodes()
	v.volumes()
	v.discovery()
	v.balancer()
}

// names lists a named map's entries in file order (sorted for a Cluster
// built in code), so "first" and "also at line N" follow the file.
func names[V any](s *source, path string, m map[string]V) []string {
	out := make([]string, 0, len(m))
	taken := make(map[string]bool, len(m))
	for _, n := range s.order[path] {
		if _, ok := m[n]; ok && !taken[n] {
			out, taken[n] = append(out, n), true
		}
	}
	var rest []string
	for n := range m {
		if !taken[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

var (
	hostnameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	entryNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	ifaceNameRE = regexp.MustCompile(`^[^/\s:]{1,15}$`)
	domainRE    = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hexRE       = regexp.MustCompile(`^[0-9a-f]+$`)
)

// nameFix proposes a valid spelling of a bad name.
func nameFix(name string, hostname bool) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case !hostname && (r == '.' || r == '_'):
			b.WriteRune(r)
		case r == '_' || r == ' ' || r == '.':
			b.WriteRune('-')
		}
	}
	s := strings.Trim(b.String(), "-._")
	if len(s) > 63 {
		s = s[:63]
	}
	if s == "" {
		s = "pi1"
	}
	return s
}

func (v *validator) checkName(kind, path, name string, hostname bool) {
	re, rule := entryNameRE, "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
	if hostname {
		re, rule = hostnameRE, "lowercase letters, digits and '-' (it becomes the hostname)"
	}
	if !re.MatchString(name) {
		v.s.errPath(path, true, fmt.Sprintf("use %s, e.g. %s", rule, nameFix(name, hostname)), "%s name %q is not valid", kind, name)
	}
}

func (v *validator) controller() {
	c, s := v.c, v.s
	a := c.Controller.Address
	switch {
	case s.bad["controller.address"] || s.bad["controller"] || s.bad[""]:
	case !a.IsValid():
		s.errPath("controller.address", false, "add address: 10.99.0.1/24 under controller: (this host's address on the boot network, with prefix length)", "controller.address is missing")
	case !a.Addr().Is4():
		s.errPath("controller.address", false, "write an IPv4 address with prefix length, e.g. address: 10.99.0.1/24", "controller.address %s is not IPv4 (netbooting uses DHCPv4)", a)
	case a.Bits() < 8 || a.Bits() > 30:
		s.errPath("controller.address", false, "use a prefix length from /8 to /30, e.g. "+netip.PrefixFrom(a.Addr(), 24).String(), "controller.address %s: a /%d subnet cannot hold the nodes", a, a.Bits())
	case a.Addr() == a.Masked().Addr() || a.Addr() == broadcast(a):
		first := addrAdd(a.Masked().Addr(), 1)
		s.errPath("controller.address", false, "use a host address, e.g. "+netip.PrefixFrom(first, a.Bits()).String(), "controller.address %s is the subnet's network or broadcast address", a)
	default:
		v.subnet = a.Masked()
	}
	seen := map[string]int{}
	for i, name := range c.Controller.Interfaces {
		p := indexPath("controller.interfaces", i)
		if !ifaceNameRE.MatchString(name) {
			s.errPath(p, false, "write the name `ip link` shows, e.g. eth0 or br0", "%q is not a network interface name", name)
			continue
		}
		if j, dup := seen[name]; dup {
			s.errPath(p, false, "list each interface once", "interface %s is listed twice (also item %d)", name, j+1)
			continue
		}
		seen[name] = i
	}
	v.absPath("controller.state_dir", c.Controller.StateDir, DefaultStateDir)
	v.absPath("controller.api_socket", c.Controller.APISocket, DefaultAPISocket)
	if len(c.Controller.APISocket) > 107 {
		s.errPath("controller.api_socket", false, "use a shorter path, e.g. "+DefaultAPISocket, "controller.api_socket is longer than a unix socket path may be (107 bytes)")
	}
}

func (v *validator) absPath(path, value, example string) {
	if value != "" && !filepath.IsAbs(value) {
		v.s.errPath(path, false, "write an absolute path, e.g. "+example, "%s %q is not an absolute path", path, value)
	}
}

func (v *validator) ports() {
	p := v.c.Ports
	or := func(port, def uint16) uint16 {
		if port == 0 {
			return def
		}
		return port
	}
	// TFTP is UDP; the others share TCP and must not collide.
	tcp := []struct {
		key  string
		port uint16
	}{{"nfs", or(p.NFS, DefaultNFSPort)}, {"balancer", or(p.Balancer, DefaultBalancerPort)}, {"agent", or(p.Agent, DefaultAgentPort)}, {"api", p.API}}
	for i, a := range tcp {
		for _, b := range tcp[:i] {
			if a.port != 0 && a.port == b.port {
				v.s.errPath("ports."+a.key, false, "give each TCP service its own port", "ports.%s %d is also the %s port", a.key, a.port, b.key)
			}
		}
	}
}

func (v *validator) dhcp() {
	c, s := v.c, v.s
	d := c.DHCP
	if d.Mode != "" && !slices.Contains(DHCPModes(), string(d.Mode)) {
		s.errPath("dhcp.mode", false, enumFix(string(d.Mode), DHCPModes()), "unknown DHCP mode %q", d.Mode)
	}
	full := d.Mode == "" || d.Mode == DHCPFull || !slices.Contains(DHCPModes(), string(d.Mode))
	if d.Range.IsValid() && !s.bad["dhcp.range"] {
		v.dhcpRange(full)
	}
	if r := d.Router; r.IsValid() && !s.bad["dhcp.router"] {
		switch {
		case !r.Is4():
			s.errPath("dhcp.router", false, "write an IPv4 address, e.g. router: 10.99.0.1", "dhcp.router %s is not IPv4", r)
		case v.subnet.IsValid() && !v.subnet.Contains(r):
			s.errPath("dhcp.router", false, "the nodes' gateway must be on the boot network: use an address in "+v.usable(), "dhcp.router %s is outside the subnet %s", r, v.subnet)
		case v.subnet.IsValid() && (r == v.subnet.Addr() || r == broadcast(v.subnet)):
			s.errPath("dhcp.router", false, "use the gateway's own address, e.g. "+addrAdd(v.subnet.Addr(), 1).String(), "dhcp.router %s is the subnet's network or broadcast address", r)
		}
	}
	for i, a := range d.DNS {
		if !a.Is4() {
			s.errPath(indexPath("dhcp.dns", i), false, "list IPv4 addresses only, e.g. dns: [10.99.0.1]", "DNS server %s is not IPv4 (DHCPv4 cannot hand it out)", a)
		}
	}
	if d.Domain != "" && !domainRE.MatchString(d.Domain) {
		s.errPath("dhcp.domain", false, "write a DNS domain of lowercase letters, digits, '-' and dots, e.g. domain: cluster.lan", "dhcp.domain %q is not a domain name", d.Domain)
	}
	if d.Lease < 0 || d.Lease.D() > time.Duration(1<<32-2)*time.Second {
		s.errPath("dhcp.lease", false, "write a positive duration, e.g. lease: 1h", "dhcp.lease %s is out of range", d.Lease)
	}
	if d.Pi3Delay != nil && (*d.Pi3Delay < 0 || d.Pi3Delay.D() > time.Minute) {
		s.errPath("dhcp.pi3_delay", false, "write a short delay, e.g. pi3_delay: 2s (0s for none)", "dhcp.pi3_delay %s must be between 0s and 1m", *d.Pi3Delay)
	}
}

// usable is the subnet's host range for messages: "10.99.0.1-10.99.0.254".
func (v *validator) usable() string {
	return addrAdd(v.subnet.Addr(), 1).String() + "-" + addrAdd(broadcast(v.subnet), -1).String()
}

func (v *validator) dhcpRange(full bool) {
	c, s := v.c, v.s
	r := c.DHCP.Range
	if !full {
		s.errPath("dhcp.range", false, "remove range: (in "+string(c.DHCP.Mode)+" mode pictl hands out no addresses; your other DHCP server owns the pool)", "dhcp.range is used only in full mode")
		return
	}
	if r.First.Compare(r.Last) > 0 {
		s.errPath("dhcp.range", false, "write the lower address first: range: "+r.Last.String()+"-"+r.First.String(), "dhcp.range %s is reversed", r)
		return
	}
	if !v.subnet.IsValid() {
		return
	}
	if !v.subnet.Contains(r.First) || !v.subnet.Contains(r.Last) {
		s.errPath("dhcp.range", false, "use addresses in "+v.usable()+", e.g. range: "+v.defaultRange().String(), "dhcp.range %s is outside the subnet %s", r, v.subnet)
		return
	}
	if r.First == v.subnet.Addr() {
		s.errPath("dhcp.range", false, "start at "+addrAdd(r.First, 1).String(), "dhcp.range %s includes the subnet's network address", r)
	}
	if r.Last == broadcast(v.subnet) {
		s.errPath("dhcp.range", false, "end at "+addrAdd(r.Last, -1).String(), "dhcp.range %s includes the subnet's broadcast address", r)
	}
	for _, other := range []struct {
		what string
		a    netip.Addr
	}{{"the controller's own address", c.Controller.Address.Addr()}, {"the router's address", c.DHCP.Router}} {
		if !r.Contains(other.a) {
			continue
		}
		fix := "move the range so it leaves out " + other.a.String()
		if other.a != r.Last {
			fix = "start the range after it: range: " + addrAdd(other.a, 1).String() + "-" + r.Last.String()
		} else if other.a != r.First {
			fix = "end the range before it: range: " + r.First.String() + "-" + addrAdd(other.a, -1).String()
		}
		s.errPath("dhcp.range", false, fix, "dhcp.range %s includes %s %s", r, other.what, other.a)
	}
}

// defaultRange is the pool pictl init proposes for the subnet.
func (v *validator) defaultRange() AddrRange {
	return DefaultRange(netip.PrefixFrom(v.c.Controller.Address.Addr(), v.subnet.Bits()))
}

// DefaultRange proposes a dynamic pool in the controller's subnet that
// leaves out the controller's address: .100-.199 in a /24, the upper half
// of smaller subnets.
// It is the zero range for anything but an IPv4 subnet of /30 or wider.
func DefaultRange(controller netip.Prefix) AddrRange {
	if !controller.Addr().Is4() || controller.Bits() > 30 || controller.Bits() < 0 {
		return AddrRange{}
	}
	sub := controller.Masked()
	hosts := int64(1) << (32 - sub.Bits())
	var r AddrRange
	if hosts >= 256 {
		r = AddrRange{addrAdd(sub.Addr(), 100), addrAdd(sub.Addr(), 199)}
	} else {
		r = AddrRange{addrAdd(sub.Addr(), hosts/2), addrAdd(broadcast(sub), -1)}
	}
	if c := controller.Addr(); r.Contains(c) {
		r = largerSide(r, c)
		if !r.IsValid() { // the pool was only the controller's address
			r = largerSide(AddrRange{addrAdd(sub.Addr(), 1), addrAdd(broadcast(sub), -1)}, c)
		}
	}
	return r
}

// largerSide is the larger part of r left when c is cut out of it (the
// zero range when nothing is left).
func largerSide(r AddrRange, c netip.Addr) AddrRange {
	below := AddrRange{r.First, addrAdd(c, -1)}
	above := AddrRange{addrAdd(c, 1), r.Last}
	lb, la := rangeLen(below), rangeLen(above)
	switch {
	case la <= 0 && lb <= 0:
		return AddrRange{}
	case la >= lb:
		return above
	}
	return below
}

func rangeLen(r AddrRange) int64 {
	a, b := r.First.As4(), r.Last.As4()
	x := int64(a[0])<<24 | int64(a[1])<<16 | int64(a[2])<<8 | int64(a[3])
	y := int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
	return y - x + 1
}

func (v *validator) discovery() {
	c, s := v.c, v.s
	if c.Discovery != "" && !slices.Contains(DiscoveryPolicies(), string(c.Discovery)) {
		s.errPath("discovery", false, enumFix(string(c.Discovery), DiscoveryPolicies()), "unknown discovery policy %q", c.Discovery)
		return
	}
	if c.Discovery == DiscoveryBoot {
		if _, _, ok := c.DefaultImage(); !ok {
			s.errPath("discovery", false, "mark one image default: true, or write discovery: record", "discovery: boot needs a default image to boot unknown machines with")
		}
	}
}

func (v *validator) images() {
	c, s := v.c, v.s
	firstDefault := ""
	for _, name := range names(s, "images", c.Images) {
		img, p := c.Images[name], "images."+name
		v.checkName("image", p, name, false)
		if img == nil {
			continue
		}
		v.arch(p+".arch", img.Arch)
		v.absPath(p+".boot", img.Boot, "/var/lib/pictl/images/"+name+"/boot")
		v.absPath(p+".root", img.Root, "/var/lib/pictl/images/"+name+"/root")
		if img.Default {
			if firstDefault != "" {
				s.errPath(p+".default", false, "keep default: true on one image only", "image %s is marked default, and so is image %s%s", name, firstDefault, s.atLine("images."+firstDefault+".default"))
			} else {
				firstDefault = name
			}
		}
		if strings.ContainsAny(img.Cmdline, "\r\n") {
			s.errPath(p+".cmdline", false, "write the kernel arguments on one line", "image %s's cmdline has a line break", name)
		}
	}
}

func (v *validator) arch(path, arch string) {
	if arch != "" && !slices.Contains(KnownArches(), arch) && !v.s.bad[path] {
		v.s.errPath(path, false, enumFix(arch, KnownArches()), "unknown architecture %q", arch)
	}
}

func (v *validator) roles() {
	c, s := v.c, v.s
	for _, name := range names(s, "roles", c.Roles) {
		p := "roles." + name
		if r := c.Roles[name]; r != nil {
			for _, vn := range sortedVarNames(r.Vars) {
				vp := p + ".vars." + vn
				switch {
				case !varNameRE.MatchString(vn):
					s.errPath(vp, true, "use letters, digits and _ (role templates write {{.Vars.NAME}})", "role %s's var name %q is not a plain name", name, vn)
				case strings.ContainsAny(r.Vars[vn], "\r\n\x00") && !s.bad[vp]:
					s.errPath(vp, false, "write the value on one line", "role %s's var %s has a line break", name, vn)
				}
			}
		}
		switch {
		case slices.Contains(BuiltinRoles(), name):
			// A built-in is listed to give it vars; it keeps its own
			// description.
			if c.Roles[name] != nil && c.Roles[name].Description != "" {
				s.errPath(p+".description", true, "remove it; a built-in role may only be given vars: here", "role %s is built in and has its own description", name)
			}
		case name == "none":
			s.errPath(p, true, "pick another name; none means no role", "a role cannot be named none")
		default:
			v.checkName("role", p, name, false)
		}
	}
}

// varNameRE is a role var name: templates read it as {{.Vars.NAME}}.
var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func sortedVarNames(vars map[string]string) []string {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

type owner struct{ node, path string }

func (v *validator) nodes() {
	c, s := v.c, v.s
	macs, serials, ips := map[string]owner{}, map[string]owner{}, map[netip.Addr]owner{}
	full := c.DHCP.Mode == "" || c.DHCP.Mode == DHCPFull
	for _, name := range names(s, "nodes", c.Nodes) {
		n, p := c.Nodes[name], "nodes."+name
		v.checkName("node", p, name, true)
		if n == nil {
			n = &Node{}
		}
		v.nodeMACs(name, n, macs)
		if n.Serial != "" && !s.bad[p+".serial"] {
			if (len(n.Serial) != 8 && len(n.Serial) != 16) || !hexRE.MatchString(n.Serial) {
				s.errPath(p+".serial", false, "write the 8 hex digits the Pi shows on its boot screen (or the 16 of /proc/cpuinfo), e.g. serial: 9ffefdef", "serial %q is not 8 or 16 hex digits", n.Serial)
			} else {
				key := n.Serial[len(n.Serial)-8:]
				if o, dup := serials[key]; dup {
					s.errPath(p+".serial", false, "give each node its own serial", "duplicate serial %s (also node %s%s)", n.Serial, o.node, s.atLine(o.path))
				} else {
					serials[key] = owner{name, p + ".serial"}
				}
			}
		}
		if n.Model != "" && !slices.Contains(KnownModels(), n.Model) {
			s.errPath(p+".model", false, enumFix(n.Model, KnownModels()), "unknown model %q", n.Model)
		}
		v.arch(p+".arch", n.Arch)
		if n.Image != "" {
			if img, ok := c.Images[n.Image]; !ok {
				s.errPath(p+".image", false, v.imageFix(n.Image), "node %s's image %q is not under images:", name, n.Image)
			} else if img != nil && img.Arch != "" && n.Arch != "" && img.Arch != n.Arch {
				s.errPath(p+".arch", false, "use an "+n.Arch+" image, or fix arch:", "node %s is %s but its image %s is %s", name, n.Arch, n.Image, img.Arch)
			}
		}
		if n.Role != "" && !c.RoleKnown(n.Role) {
			s.errPath(p+".role", false, v.roleFix(n.Role), "node %s's role %q is unknown", name, n.Role)
		}
		if n.IP.IsValid() && !s.bad[p+".ip"] {
			v.nodeIP(name, n.IP, ips)
		}
		if full && !n.IP.IsValid() && !s.bad[p+".ip"] && !c.DHCP.Range.IsValid() && !s.bad["dhcp.range"] && n.NetbootEnabled() {
			s.errPath(p, true, "give it ip: ADDRESS, or set dhcp.range so pictl has a pool", "node %s has no ip: and dhcp.range is empty, so it would get no address", name)
		}
		if strings.ContainsAny(n.Cmdline, "\r\n") {
			s.errPath(p+".cmdline", false, "write the kernel arguments on one line", "node %s's cmdline has a line break", name)
		}
	}
}

func (v *validator) nodeMACs(name string, n *Node, macs map[string]owner) {
	s, p := v.s, "nodes."+name
	if len(n.MACs) == 0 {
		for path := range s.bad {
			if strings.HasPrefix(path, p+".macs") {
				return // the unreadable MAC was reported already
			}
		}
		s.errPath(p, true, "add mac: dc:a6:32:01:36:c2 with the node's MAC (its boot screen or `ip link` shows it)", "node %s has no MAC address", name)
		return
	}
	mine := map[string]bool{}
	for i, mac := range n.MACs {
		mp := indexPath(p+".macs", i)
		key := mac.String()
		switch {
		case len(mac) != 6:
			s.errPath(mp, false, "write six hex pairs, e.g. dc:a6:32:01:36:c2", "%s is not an Ethernet MAC address", mac)
		case mac[0]&1 == 1:
			s.errPath(mp, false, "check the digits: a network card's address has an even first byte", "MAC %s is a multicast address", mac)
		case key == "00:00:00:00:00:00":
			s.errPath(mp, false, "write the node's real MAC", "MAC %s is all zeros", mac)
		case mine[key]:
			s.errPath(mp, false, "list each MAC once", "MAC %s is listed twice for node %s", mac, name)
		default:
			mine[key] = true
			if o, dup := macs[key]; dup {
				s.errPath(mp, false, "give each node its own MAC", "duplicate MAC %s (also node %s%s)", mac, o.node, s.atLine(o.path))
				continue
			}
			macs[key] = owner{name, mp}
		}
	}
}

func (v *validator) nodeIP(name string, ip netip.Addr, ips map[netip.Addr]owner) {
	c, s, p := v.c, v.s, "nodes."+name+".ip"
	switch {
	case !ip.Is4():
		s.errPath(p, false, "write an IPv4 address, e.g. ip: 10.99.0.13", "node %s's ip %s is not IPv4", name, ip)
		return
	case !v.subnet.IsValid():
	case !v.subnet.Contains(ip):
		s.errPath(p, false, "use an address in "+v.usable()+" (controller.address "+c.Controller.Address.String()+")", "node %s's ip %s is outside the subnet %s", name, ip, v.subnet)
		return
	case ip == v.subnet.Addr() || ip == broadcast(v.subnet):
		s.errPath(p, false, "use an address in "+v.usable(), "node %s's ip %s is the subnet's network or broadcast address", name, ip)
		return
	case ip == c.Controller.Address.Addr():
		s.errPath(p, false, "give the node another address in "+v.usable(), "node %s's ip %s is the controller's own address", name, ip)
		return
	}
	if ip == c.DHCP.Router {
		s.errPath(p, false, "give the node another address", "node %s's ip %s is the router's address (dhcp.router)", name, ip)
		return
	}
	if o, dup := ips[ip]; dup {
		s.errPath(p, false, "give each node its own address", "duplicate address %s (also node %s%s)", ip, o.node, s.atLine(o.path))
		return
	}
	ips[ip] = owner{name, p}
}

func (v *validator) imageFix(image string) string {
	known := make([]string, 0, len(v.c.Images))
	for n := range v.c.Images {
		known = append(known, n)
	}
	sort.Strings(known)
	if best := closest(image, known); best != "" {
		return "did you mean " + best + "? or import it with pictl image import " + image + " FILE"
	}
	if len(known) == 0 {
		return "there are no images yet: import one with pictl image import " + image + " FILE, or remove image:"
	}
	return "write one of " + oneOf(known) + ", or import it with pictl image import " + image + " FILE"
}

func (v *validator) roleFix(role string) string {
	known := v.c.RoleNames()
	if best := closest(role, known); best != "" {
		return "did you mean " + best + "? or define it in roles/" + role + ".yaml beside this file"
	}
	return "write one of " + oneOf(known) + ", or define " + role + " in roles/" + role + ".yaml beside this file"
}

func (v *validator) volumes() {
	c, s := v.c, v.s
	for _, name := range names(s, "volumes", c.Volumes) {
		vol, p := c.Volumes[name], "volumes."+name
		v.checkName("volume", p, name, false)
		if vol == nil {
			continue
		}
		v.absPath(p+".path", vol.Path, "/srv/"+name)
		switch vol.Squash {
		case "", SquashRoot, SquashNone, SquashAll:
		default:
			s.errPath(p+".squash", false, "write root (the default), none or all", "volume %s: unknown squash %q", name, vol.Squash)
		}
		for _, a := range []struct {
			key string
			id  *uint32
		}{{"anonuid", vol.AnonUID}, {"anongid", vol.AnonGID}} {
			if a.id != nil && *a.id == 1<<32-1 {
				s.errPath(p+"."+a.key, false, "use an id below 4294967295, e.g. 65534", "volume %s: %s %d is the invalid id (-1)", name, a.key, *a.id)
			}
		}
		for i, r := range vol.Roles {
			if !c.RoleKnown(r) {
				s.errPath(indexPath(p+".roles", i), false, v.roleFix(r), "volume %s names role %q, which is unknown", name, r)
			}
		}
		for i, n := range vol.Nodes {
			if _, ok := c.Nodes[n]; !ok {
				known := names(s, "nodes", c.Nodes)
				fix := "remove it or add the node under nodes:"
				if best := closest(n, known); best != "" {
					fix = "did you mean " + best + "? or " + fix
				}
				s.errPath(indexPath(p+".nodes", i), false, fix, "volume %s names node %q, which is not under nodes:", name, n)
			}
		}
	}
}
