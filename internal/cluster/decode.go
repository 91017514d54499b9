package cluster

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decode reads a parsed cluster.yaml into a Cluster, recording positions
// and every problem of form (unknown keys, unreadable values) in the
// returned source. Meaning (references, subnets, duplicates) is checked
// by validate afterwards.
func decode(file string, doc *yaml.Node) (*Cluster, *source) {
	c := &Cluster{}
	s := newSource(file)
	top := doc
	if top != nil && top.Kind == yaml.DocumentNode {
		top = nil
		if len(doc.Content) > 0 {
			top = doc.Content[0]
		}
	}
	if top == nil || top.Kind == 0 {
		return c, s
	}
	s.hasDoc = true
	s.mapping("", top, secTop, "", func(key, p string, k, v *yaml.Node) {
		switch key {
		case "controller":
			s.decodeController(&c.Controller, p, v)
		case "ports":
			s.decodePorts(&c.Ports, p, v)
		case "dhcp":
			s.decodeDHCP(&c.DHCP, p, v)
		case "tftp":
			s.decodeTFTP(&c.TFTP, p, v)
		case "discovery":
			if str, ok := s.scalar(p, v, "discovery: record"); ok {
				c.Discovery = DiscoveryPolicy(str)
			}
		case "images":
			c.Images = map[string]*Image{}
			s.mapping(p, v, secNone, "image", func(name, p string, _, v *yaml.Node) {
				img := &Image{}
				c.Images[name] = img
				s.decodeImage(img, p, v)
			})
		case "nodes":
			c.Nodes = map[string]*Node{}
			s.mapping(p, v, secNone, "node", func(name, p string, _, v *yaml.Node) {
				n := &Node{}
				c.Nodes[name] = n
				s.decodeNode(n, p, v)
			})
		case "volumes":
			c.Volumes = map[string]*Volume{}
			s.mapping(p, v, secNone, "volume", func(name, p string, _, v *yaml.Node) {
				vol := &Volume{}
				c.Volumes[name] = vol
				s.decodeVolume(vol, p, v)
			})
		case "balancer":
			s.decodeBalancer(&c.Balancer, p, v)
		case "roles":
			c.Roles = map[string]*RoleRef{}
			s.mapping(p, v, secNone, "role", func(name, p string, _, v *yaml.Node) {
				r := &RoleRef{}
				c.Roles[name] = r
				s.mapping(p, v, secRole, "", func(key, p string, _, v *yaml.Node) {
					switch key {
					case "description":
						r.Description, _ = s.scalar(p, v, "description: what this role is for")
					case "vars":
						s.decodeRoleVars(r, p, v)
					}
				})
			})
		}
	})
	return c, s
}

func (s *source) decodeController(ctl *Controller, path string, v *yaml.Node) {
	s.mapping(path, v, secController, "", func(key, p string, k, v *yaml.Node) {
		switch key {
		case "interface", "interfaces":
			other := map[string]string{"interface": "interfaces", "interfaces": "interface"}[key]
			if s.keys[joinPath(path, other)] != nil {
				s.errAt(k, "keep one: interface: NAME for one, interfaces: [A, B] for several", "both interface: and interfaces: are given")
				return
			}
			canon := joinPath(path, "interfaces")
			s.keys[canon], s.values[canon] = k, v
			for _, item := range s.list(canon, v, "interfaces: [eth0]") {
				if str, ok := s.scalar(item.path, item.node, "interfaces: [eth0]"); ok {
					ctl.Interfaces = append(ctl.Interfaces, str)
				}
			}
		case "address":
			str, ok := s.scalar(p, v, "address: 10.99.0.1/24")
			if !ok {
				return
			}
			pfx, err := netip.ParsePrefix(strings.TrimSpace(str))
			if err != nil {
				s.bad[p] = true
				if a, err := netip.ParseAddr(strings.TrimSpace(str)); err == nil {
					s.errAt(v, "write it with the boot network's prefix length, e.g. address: "+a.String()+"/24",
						"controller.address %s has no prefix length", str)
					return
				}
				s.errAt(v, "write this controller's address with prefix length, e.g. address: 10.99.0.1/24",
					"controller.address %q is not an address with prefix length", str)
				return
			}
			ctl.Address = pfx
		case "state_dir":
			ctl.StateDir, _ = s.scalar(p, v, "state_dir: "+DefaultStateDir)
		case "api_socket":
			ctl.APISocket, _ = s.scalar(p, v, "api_socket: "+DefaultAPISocket)
		}
	})
}

func (s *source) decodePorts(ports *Ports, path string, v *yaml.Node) {
	s.mapping(path, v, secPorts, "", func(key, p string, _, v *yaml.Node) {
		dst := map[string]*uint16{"tftp": &ports.TFTP, "nfs": &ports.NFS, "api": &ports.API, "balancer": &ports.Balancer, "agent": &ports.Agent}[key]
		if n, ok := s.port(p, v, "ports."+key, key+": 8080", "to use the default", 0); ok {
			*dst = n
		}
	})
}

// port reads a port number of at least min; what names it in the error,
// hint is the example line and fix ends "or remove the line ...".
func (s *source) port(p string, v *yaml.Node, what, hint, fix string, min uint64) (uint16, bool) {
	str, ok := s.scalar(p, v, hint)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(str), 10, 16)
	if err != nil || n < min {
		s.bad[p] = true
		s.errAt(v, "write a number from 1 to 65535, or remove the line "+fix, "%s %q is not a port number", what, str)
		return 0, false
	}
	return uint16(n), true
}

func (s *source) decodeDHCP(d *DHCP, path string, v *yaml.Node) {
	s.mapping(path, v, secDHCP, "", func(key, p string, _, v *yaml.Node) {
		switch key {
		case "mode":
			if str, ok := s.scalar(p, v, "mode: full"); ok {
				d.Mode = DHCPMode(str)
			}
		case "range":
			str, ok := s.scalar(p, v, "range: 10.99.0.100-10.99.0.199")
			if !ok || strings.TrimSpace(str) == "" {
				return
			}
			r, err := ParseAddrRange(str)
			if err != nil {
				s.bad[p] = true
				s.errAt(v, "write FIRST-LAST, e.g. range: 10.99.0.100-10.99.0.199", "dhcp.range %q is not a range of IPv4 addresses", str)
				return
			}
			d.Range = r
		case "router":
			d.Router = s.addr(p, v, "router: 10.99.0.1")
		case "dns":
			for _, item := range s.list(p, v, "dns: [10.99.0.1]") {
				if a := s.addr(item.path, item.node, "dns: [10.99.0.1]"); a.IsValid() {
					d.DNS = append(d.DNS, a)
				}
			}
		case "domain":
			d.Domain, _ = s.scalar(p, v, "domain: cluster.lan")
		case "lease":
			d.Lease, _ = s.duration(p, v, "lease: 1h")
		case "pi3_delay":
			if dur, ok := s.duration(p, v, "pi3_delay: 2s"); ok {
				d.Pi3Delay = &dur
			}
		}
	})
}

func (s *source) decodeTFTP(t *TFTP, path string, v *yaml.Node) {
	s.mapping(path, v, secTFTP, "", func(key, p string, _, v *yaml.Node) {
		switch key {
		case "window":
			str, ok := s.scalar(p, v, "window: 8")
			if !ok {
				return
			}
			n, err := strconv.Atoi(strings.TrimSpace(str))
			if err != nil || n < 1 || n > 60 {
				s.bad[p] = true
				s.errAt(v, "write 1 (every client one block at a time) to 60, or remove the line for the default 8",
					"tftp.window %q is not a number of blocks from 1 to 60", str)
				return
			}
			t.Window = n
		case "window_clients":
			for _, item := range s.list(p, v, "window_clients: [10.99.0.64/26]") {
				str, ok := s.scalar(item.path, item.node, "window_clients: [10.99.0.64/26]")
				if !ok {
					continue
				}
				pfx, err := netip.ParsePrefix(strings.TrimSpace(str))
				if err != nil {
					if a, aerr := netip.ParseAddr(strings.TrimSpace(str)); aerr == nil && a.Is4() {
						pfx = netip.PrefixFrom(a, 32)
					} else {
						s.bad[item.path] = true
						s.errAt(s.resolve(item.node), "write an IPv4 address or prefix, e.g. 10.99.0.64/26",
							"%s %q is not an IPv4 address or prefix", describe(item.path), str)
						continue
					}
				}
				if !pfx.Addr().Is4() {
					s.bad[item.path] = true
					s.errAt(s.resolve(item.node), "write an IPv4 prefix; the TFTP server listens on IPv4",
						"%s %s is not IPv4", describe(item.path), str)
					continue
				}
				t.WindowClients = append(t.WindowClients, pfx.Masked())
			}
			if len(t.WindowClients) > MaxWindowClients {
				s.bad[p] = true
				s.errAt(v, "merge addresses into wider prefixes (the steering program holds at most "+strconv.Itoa(MaxWindowClients)+")",
					"tftp.window_clients has %d entries", len(t.WindowClients))
			}
		}
	})
}

func (s *source) decodeImage(img *Image, path string, v *yaml.Node) {
	s.mapping(path, v, secImage, "", func(key, p string, _, v *yaml.Node) {
		switch key {
		case "arch":
			img.Arch, _ = s.scalar(p, v, "arch: arm64")
		case "boot":
			img.Boot, _ = s.scalar(p, v, "boot: /var/lib/pictl/images/NAME/boot")
		case "root":
			img.Root, _ = s.scalar(p, v, "root: /var/lib/pictl/images/NAME/root")
		case "default":
			img.Default, _ = s.boolean(p, v)
		case "cmdline":
			img.Cmdline, _ = s.scalar(p, v, "cmdline: quiet")
		}
	})
}

func (s *source) decodeNode(n *Node, path string, v *yaml.Node) {
	s.mapping(path, v, secNode, "", func(key, p string, k, v *yaml.Node) {
		switch key {
		case "mac", "macs":
			other := map[string]string{"mac": "macs", "macs": "mac"}[key]
			if s.keys[joinPath(path, other)] != nil {
				s.errAt(k, "keep one: mac: M for one MAC, macs: [M1, M2] for several", "both mac: and macs: are given")
				return
			}
			canon := joinPath(path, "macs")
			s.keys[canon], s.values[canon] = k, v
			for _, item := range s.list(canon, v, "mac: dc:a6:32:01:36:c2") {
				str, ok := s.scalar(item.path, item.node, "mac: dc:a6:32:01:36:c2")
				if !ok {
					continue
				}
				mac, err := net.ParseMAC(strings.TrimSpace(str))
				if err != nil || len(mac) != 6 {
					s.bad[item.path] = true
					s.errAt(item.node, "write six hex pairs separated by colons, e.g. dc:a6:32:01:36:c2", "%q is not a MAC address", str)
					continue
				}
				n.MACs = append(n.MACs, mac)
			}
		case "serial":
			str, _ := s.scalar(p, v, "serial: 9ffefdef")
			n.Serial = strings.ToLower(strings.TrimSpace(str))
		case "model":
			n.Model, _ = s.scalar(p, v, "model: pi4")
		case "arch":
			n.Arch, _ = s.scalar(p, v, "arch: arm64")
		case "image":
			n.Image, _ = s.scalar(p, v, "image: rpi-os")
		case "role":
			n.Role, _ = s.scalar(p, v, "role: web")
			if n.Role == "none" {
				n.Role = ""
			}
		case "ip":
			n.IP = s.addr(p, v, "ip: 10.99.0.13")
		case "netboot":
			if b, ok := s.boolean(p, v); ok {
				n.Netboot = &b
			}
		case "cmdline":
			n.Cmdline, _ = s.scalar(p, v, "cmdline: quiet")
		}
	})
}

func (s *source) decodeVolume(vol *Volume, path string, v *yaml.Node) {
	s.mapping(path, v, secVolume, "", func(key, p string, _, v *yaml.Node) {
		switch key {
		case "readonly":
			vol.ReadOnly, _ = s.boolean(p, v)
		case "path":
			vol.Path, _ = s.scalar(p, v, "path: /srv/www")
		case "squash":
			vol.Squash, _ = s.scalar(p, v, "squash: root")
		case "anonuid", "anongid":
			str, ok := s.scalar(p, v, key+": 65534")
			if !ok {
				return
			}
			n, err := strconv.ParseUint(strings.TrimSpace(str), 10, 32)
			if err != nil {
				s.bad[p] = true
				s.errAt(v, "write a number from 0 to 4294967294, or remove the line to use 65534", "volumes: %s %q is not a user or group id", key, str)
				return
			}
			id := uint32(n)
			if key == "anonuid" {
				vol.AnonUID = &id
			} else {
				vol.AnonGID = &id
			}
		case "roles", "nodes":
			dst := &vol.Roles
			if key == "nodes" {
				dst = &vol.Nodes
			}
			for _, item := range s.list(p, v, key+": [a, b]") {
				if str, ok := s.scalar(item.path, item.node, key+": [a, b]"); ok {
					*dst = append(*dst, str)
				}
			}
		}
	})
}

// decodeRoleVars reads a role's vars: name → single value, kept as
// written (a vip 10.99.0.50 or a port 3306 stays text).
func (s *source) decodeRoleVars(r *RoleRef, path string, v *yaml.Node) {
	r.Vars = map[string]string{}
	s.mapping(path, v, secNone, "var", func(name, p string, k, v *yaml.Node) {
		if str, ok := s.scalar(p, v, name+": value"); ok {
			r.Vars[name] = str
		} else if !s.bad[p] {
			r.Vars[name] = ""
		}
	})
}

// resolve follows an alias and charges the visit to the budget; nil when
// there is nothing to read.
func (s *source) resolve(n *yaml.Node) *yaml.Node {
	s.budget--
	if s.budget == 0 {
		s.errAt(n, "write the file without deeply nested aliases", "the file is too complex to read (aliases expand to too much)")
	}
	if s.budget <= 0 || n == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "something else"
}

// mapping walks a YAML mapping, reporting duplicate keys, non-scalar keys
// and, in a known section, unknown keys. In a named map (sec == secNone)
// every key is a name and entry says what it names ("node"). Merge keys
// (<<: *base) are followed; explicit keys win over merged ones.
func (s *source) mapping(path string, n *yaml.Node, sec section, entry string, each func(key, path string, k, v *yaml.Node)) {
	n = s.resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		s.bad[path] = true
		fix := "write key: value lines indented under it"
		if entry == "" && sec != secTop {
			fix += " (keys here: " + strings.Join(sec.keys(), ", ") + ")"
		}
		s.errAt(n, fix, "%s must be a mapping, not %s", describe(path), kindName(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for _, kv := range s.entries(n, seen, sec, entry, 0) {
		k, v := kv[0], kv[1]
		key := k.Value
		p := joinPath(path, key)
		if sec != secNone {
			if !slices.Contains(sec.keys(), key) {
				s.unknownKey(sec, path, k)
				continue
			}
		} else {
			s.order[path] = append(s.order[path], key)
		}
		s.keys[p], s.values[p] = k, v
		each(key, p, k, v)
	}
}

// entries lists a mapping's key/value pairs with merges expanded; seen
// holds the keys taken so far (first one wins).
func (s *source) entries(n *yaml.Node, seen map[string]*yaml.Node, sec section, entry string, depth int) [][2]*yaml.Node {
	var out, merges [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := s.resolve(n.Content[i])
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			s.errAt(k, "write a plain name before the colon", "a key must be a plain name, not %s", kindName(k))
			continue
		}
		if k.Tag == "!!merge" {
			merges = append(merges, [2]*yaml.Node{k, n.Content[i+1]})
			continue
		}
		if depth > 0 {
			_, set := seen[k.Value]
			_, setOther := seen[sameAs(sec, k.Value)]
			if set || setOther {
				continue // merged, but the mapping sets it itself (macs: overrides a merged mac:)
			}
		}
		if first, dup := seen[k.Value]; dup {
			if entry != "" {
				s.errAt(k, "give each "+entry+" its own name", "duplicate %s name %s (first at line %d)", entry, k.Value, first.Line)
			} else {
				s.errAt(k, "remove one of them", "duplicate key %s (first at line %d)", k.Value, first.Line)
			}
			continue
		}
		seen[k.Value] = k
		out = append(out, [2]*yaml.Node{k, n.Content[i+1]})
	}
	for _, m := range merges {
		if depth >= 8 {
			s.errAt(m[0], "merge fewer levels deep", "merges (<<:) are nested too deeply")
			break
		}
		src := s.resolve(m[1])
		var sources []*yaml.Node
		switch {
		case src == nil:
		case src.Kind == yaml.MappingNode:
			sources = []*yaml.Node{src}
		case src.Kind == yaml.SequenceNode:
			for _, item := range src.Content {
				if item = s.resolve(item); item != nil {
					sources = append(sources, item)
				}
			}
		}
		for _, src := range sources {
			if src.Kind != yaml.MappingNode {
				s.errAt(m[0], "merge an anchored mapping: <<: *name", "<<: must name a mapping")
				continue
			}
			out = append(out, s.entries(src, seen, sec, entry, depth+1)...)
		}
	}
	return out
}

// sameAs names a key's other spelling (mac and macs set the same thing).
func sameAs(sec section, key string) string {
	switch {
	case sec == secNode && key == "mac":
		return "macs"
	case sec == secNode && key == "macs":
		return "mac"
	case sec == secController && key == "interface":
		return "interfaces"
	case sec == secController && key == "interfaces":
		return "interface"
	}
	return key
}

func (s *source) unknownKey(sec section, path string, k *yaml.Node) {
	where := sec.what()
	if sec == secNode || sec == secImage || sec == secVolume || sec == secRole {
		where = "in " + describe(path)
	}
	known := strings.Join(sec.keys(), ", ")
	if best := suggest(sec, k.Value); best != "" {
		s.errAt(k, "write "+best+": instead (keys here: "+known+")", "unknown key %q %s", k.Value, where)
		return
	}
	s.errAt(k, "remove it; the keys here are "+known, "unknown key %q %s", k.Value, where)
}

// scalar reads a single value as written (no YAML type guessing: a serial
// 12345678 or a MAC stays text). A null or empty value reads as absent.
func (s *source) scalar(path string, n *yaml.Node, example string) (string, bool) {
	n = s.resolve(n)
	if n == nil || isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		s.bad[path] = true
		s.errAt(n, "write a single value, e.g. "+example, "%s must be a single value, not %s", describe(path), kindName(n))
		return "", false
	}
	return n.Value, true
}

type listItem struct {
	path string
	node *yaml.Node
}

// list reads a list; a single value is a list of one, so
// `interface: br0` and `interfaces: [br0, br1]` both work.
func (s *source) list(path string, n *yaml.Node, example string) []listItem {
	n = s.resolve(n)
	if n == nil || isNull(n) {
		return nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		p := indexPath(path, 0)
		s.values[p] = n
		return []listItem{{p, n}}
	case yaml.SequenceNode:
		items := make([]listItem, 0, len(n.Content))
		for i, item := range n.Content {
			p := indexPath(path, i)
			s.values[p] = item
			items = append(items, listItem{p, item})
		}
		return items
	}
	s.bad[path] = true
	s.errAt(n, "write a list, e.g. "+example, "%s must be a list, not %s", describe(path), kindName(n))
	return nil
}

func (s *source) addr(path string, n *yaml.Node, example string) netip.Addr {
	str, ok := s.scalar(path, n, example)
	if !ok || strings.TrimSpace(str) == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(strings.TrimSpace(str))
	if err != nil {
		s.bad[path] = true
		s.errAt(s.resolve(n), "write an IPv4 address, e.g. "+example, "%s %q is not an IP address", describe(path), str)
		return netip.Addr{}
	}
	return a
}

func (s *source) boolean(path string, n *yaml.Node) (bool, bool) {
	str, ok := s.scalar(path, n, "true")
	if !ok {
		return false, false
	}
	switch strings.ToLower(strings.TrimSpace(str)) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	s.bad[path] = true
	s.errAt(s.resolve(n), "write true or false", "%s %q is not true or false", describe(path), str)
	return false, false
}

func (s *source) duration(path string, n *yaml.Node, example string) (Duration, bool) {
	str, ok := s.scalar(path, n, example)
	if !ok || strings.TrimSpace(str) == "" {
		return 0, false
	}
	d, err := ParseDuration(str)
	if err != nil {
		s.bad[path] = true
		s.errAt(s.resolve(n), "write a duration with its unit, e.g. "+example+" (units: s, m, h)", "%s %q is not a duration", describe(path), str)
		return 0, false
	}
	return d, true
}
