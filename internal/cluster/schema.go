package cluster

import (
	"fmt"
	"strings"
)

// section names a kind of mapping in cluster.yaml. The key lists below are
// the schema: the decoder accepts exactly these keys, and Document.Set
// inserts new keys in this order.
type section int

const (
	secNone section = iota // a mapping pictl knows nothing about
	secTop
	secController
	secPorts
	secDHCP
	secTFTP
	secImage
	secNode
	secVolume
	secRole
	secBalancer
	secBalancerCheck
	secBalancerTLS
)

// keys lists a section's keys in the order a person reads them.
func (s section) keys() []string {
	switch s {
	case secTop:
		return []string{"controller", "ports", "dhcp", "tftp", "discovery", "images", "nodes", "volumes", "roles", "balancer"}
	case secController:
		return []string{"interface", "interfaces", "address", "state_dir", "api_socket"}
	case secPorts:
		return []string{"tftp", "nfs", "api", "balancer", "agent"}
	case secDHCP:
		return []string{"mode", "range", "router", "dns", "domain", "lease", "pi3_delay"}
	case secTFTP:
		return []string{"window", "window_clients"}
	case secImage:
		return []string{"arch", "boot", "root", "default", "cmdline"}
	case secNode:
		return []string{"mac", "macs", "serial", "model", "arch", "image", "role", "ip", "netboot", "cmdline"}
	case secVolume:
		return []string{"readonly", "path", "roles", "nodes", "squash", "anonuid", "anongid"}
	case secRole:
		return []string{"description", "vars"}
	case secBalancer:
		return []string{"role", "mode", "policy", "sticky_cookie", "weights", "drain_timeout", "check", "tls"}
	case secBalancerCheck:
		return []string{"kind", "path", "status", "interval", "timeout", "rise", "fall"}
	case secBalancerTLS:
		return []string{"port", "cert", "key"}
	}
	return nil
}

// what says in an error message where a key is.
func (s section) what() string {
	switch s {
	case secTop:
		return "at the top level"
	case secController:
		return "under controller"
	case secPorts:
		return "under ports"
	case secDHCP:
		return "under dhcp"
	case secTFTP:
		return "under tftp"
	case secImage:
		return "in an image"
	case secNode:
		return "in a node"
	case secVolume:
		return "in a volume"
	case secRole:
		return "in a role"
	case secBalancer:
		return "under balancer"
	case secBalancerCheck:
		return "under balancer.check"
	case secBalancerTLS:
		return "under balancer.tls"
	}
	return ""
}

// rank is a key's place in the section's order; unknown keys sort last.
func (s section) rank(key string) int {
	for i, k := range s.keys() {
		if k == key {
			return i
		}
	}
	return len(s.keys())
}

// sectionAt says which section the mapping at path is.
func sectionAt(path []string) section {
	switch len(path) {
	case 0:
		return secTop
	case 1:
		switch path[0] {
		case "controller":
			return secController
		case "ports":
			return secPorts
		case "dhcp":
			return secDHCP
		case "balancer":
			return secBalancer
		}
	case 2:
		switch path[0] {
		case "images":
			return secImage
		case "nodes":
			return secNode
		case "volumes":
			return secVolume
		case "roles":
			return secRole
		case "balancer":
			switch path[1] {
			case "check":
				return secBalancerCheck
			case "tls":
				return secBalancerTLS
			}
		}
	}
	return secNone
}

// synonyms maps keys people write from habit (dnsmasq, other tools) to
// pictl's key.
func synonym(s section, key string) string {
	k := strings.ToLower(strings.NewReplacer("-", "_", " ", "_").Replace(key))
	switch s {
	case secNode:
		switch k {
		case "address", "ip_address", "ipaddr", "ipv4", "addr":
			return "ip"
		case "mac_address", "hwaddr", "ether", "ethernet", "hardware":
			return "mac"
		case "mac_addresses":
			return "macs"
		case "serial_number", "serialno", "sn":
			return "serial"
		case "os":
			return "image"
		case "roles":
			return "role"
		}
	case secController:
		switch k {
		case "ip", "ip_address", "addr", "cidr", "subnet":
			return "address"
		case "iface", "ifname", "nic", "dev", "device":
			return "interface"
		case "statedir", "data_dir", "datadir", "state":
			return "state_dir"
		case "socket", "api":
			return "api_socket"
		}
	case secDHCP:
		switch k {
		case "pool", "dynamic_range", "dhcp_range":
			return "range"
		case "gateway", "gw", "default_gateway":
			return "router"
		case "nameserver", "nameservers", "dns_servers":
			return "dns"
		case "lease_time", "leasetime":
			return "lease"
		}
	case secVolume:
		switch k {
		case "read_only", "ro":
			return "readonly"
		case "root_squash":
			return "squash"
		case "anon_uid":
			return "anonuid"
		case "anon_gid":
			return "anongid"
		}
	}
	for _, known := range s.keys() {
		if k == known {
			return known
		}
	}
	return ""
}

// suggest finds the known key closest to an unknown one.
func suggest(s section, key string) string {
	if k := synonym(s, key); k != "" {
		return k
	}
	return closest(key, s.keys())
}

// closest returns the candidate within a small edit distance of word, or "".
func closest(word string, candidates []string) string {
	best, bestDist := "", 0
	w := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(w, c)
		if best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" || bestDist > max(1, min(len(word), len(best))/3+1) || bestDist >= len(best) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance, counting a swap of two
// neighbouring letters as one edit.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// oneOf formats a choice for an error message: "full, proxy or off".
func oneOf(choices []string) string {
	switch len(choices) {
	case 0:
		return ""
	case 1:
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// enumFix is the fix for a value that is not one of choices.
func enumFix(value string, choices []string) string {
	if c := closest(value, choices); c != "" {
		return fmt.Sprintf("did you mean %s? write one of %s", c, oneOf(choices))
	}
	return "write one of " + oneOf(choices)
}

// KnownModels are the hardware models a node may declare.
func KnownModels() []string {
	return []string{"pi2", "pi3", "pi3+", "cm3", "pi4", "pi400", "cm4", "pi5", "pi500", "cm5", "x86"}
}

// KnownArches are the CPU architectures of nodes and images (Debian names).
func KnownArches() []string { return []string{"arm64", "armhf", "armel", "amd64", "i386", "riscv64"} }

// DHCPModes are the valid dhcp.mode values.
func DHCPModes() []string { return []string{string(DHCPFull), string(DHCPProxy), string(DHCPOff)} }

// DiscoveryPolicies are the valid discovery values.
func DiscoveryPolicies() []string {
	return []string{string(DiscoveryRecord), string(DiscoveryBoot), string(DiscoveryIgnore)}
}
