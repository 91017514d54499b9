package cluster

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Balancer configures the built-in balancer pictl serve runs on
// ports.balancer. Every field is optional: the zero value fronts the web
// role's nodes, least-connections, HTTP, with the role's health check.
type Balancer struct {
	// Role names the role whose nodes are members (its balancer port);
	// default web.
	Role string `yaml:"role"`
	// Mode is http (the L7 proxy, default) or tcp (L4 splice).
	Mode string `yaml:"mode"`
	// Policy is least-conn (default) or round-robin.
	Policy string `yaml:"policy"`
	// StickyCookie names the cookie that pins a client to a member
	// (mod_proxy_balancer's stickysession); "" = not sticky. http only.
	StickyCookie string `yaml:"sticky_cookie"`
	// Weights give nodes a share of the requests (default 1 each).
	Weights map[string]int `yaml:"weights"`
	// DrainTimeout bounds a member's drain (default 30s).
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Check overrides the role's health check field by field.
	Check BalancerCheck `yaml:"check"`
	// TLS adds a TLS listener (HTTP/2 and HTTP/1.1) in front of the same
	// members; nil = none.
	TLS *BalancerTLS `yaml:"tls"`
}

// BalancerTLS is the balancer's TLS listener: a PEM certificate chain and
// its key, read when pictl serve starts and on every reload.
type BalancerTLS struct {
	Port uint16 `yaml:"port"` // default 443
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// DefaultBalancerTLSPort is balancer.tls.port when not written.
const DefaultBalancerTLSPort uint16 = 443

// TLSPort is the TLS listener's port.
func (t *BalancerTLS) TLSPort() uint16 {
	if t.Port == 0 {
		return DefaultBalancerTLSPort
	}
	return t.Port
}

// BalancerCheck overrides the role's active health check; zero fields keep
// the role's (or the balancer's) value.
type BalancerCheck struct {
	Kind     string   `yaml:"kind"` // http or tcp
	Path     string   `yaml:"path"`
	Status   int      `yaml:"status"` // expected HTTP status
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Rise     int      `yaml:"rise"` // passes to come back up
	Fall     int      `yaml:"fall"` // failures to go down
}

// DefaultBalancerRole is the role the balancer fronts when balancer.role
// is not written.
const DefaultBalancerRole = "web"

// BalancedRole is the role whose nodes are the balancer's members.
func (b *Balancer) BalancedRole() string {
	if b.Role == "" {
		return DefaultBalancerRole
	}
	return b.Role
}

// BalancerModes and BalancerPolicies are the valid balancer.mode and
// balancer.policy values; BalancerCheckKinds balancer.check.kind's.
func BalancerModes() []string      { return []string{"http", "tcp"} }
func BalancerPolicies() []string   { return []string{"least-conn", "round-robin"} }
func BalancerCheckKinds() []string { return []string{"http", "tcp"} }

func (s *source) decodeBalancer(b *Balancer, path string, v *yaml.Node) {
	s.mapping(path, v, secBalancer, "", func(key, p string, _, v *yaml.Node) {
		switch key {
		case "role":
			b.Role, _ = s.scalar(p, v, "role: web")
		case "mode":
			b.Mode, _ = s.scalar(p, v, "mode: http")
		case "policy":
			b.Policy, _ = s.scalar(p, v, "policy: least-conn")
		case "sticky_cookie":
			b.StickyCookie, _ = s.scalar(p, v, "sticky_cookie: PICTLNODE")
		case "drain_timeout":
			b.DrainTimeout, _ = s.duration(p, v, "drain_timeout: 30s")
		case "weights":
			b.Weights = map[string]int{}
			s.mapping(p, v, secNone, "node", func(name, p string, _, v *yaml.Node) {
				if n, ok := s.integer(p, v, "weights: {pi3: 2}"); ok {
					b.Weights[name] = n
				}
			})
		case "tls":
			t := &BalancerTLS{}
			b.TLS = t
			s.mapping(p, v, secBalancerTLS, "", func(key, p string, _, v *yaml.Node) {
				switch key {
				case "port":
					if n, ok := s.port(p, v, "balancer.tls.port", "port: 443", "for 443", 1); ok {
						t.Port = n
					}
				case "cert":
					t.Cert, _ = s.scalar(p, v, "cert: /etc/pictl/tls/fullchain.pem")
				case "key":
					t.Key, _ = s.scalar(p, v, "key: /etc/pictl/tls/privkey.pem")
				}
			})
		case "check":
			c := &b.Check
			s.mapping(p, v, secBalancerCheck, "", func(key, p string, _, v *yaml.Node) {
				switch key {
				case "kind":
					c.Kind, _ = s.scalar(p, v, "kind: http")
				case "path":
					c.Path, _ = s.scalar(p, v, "path: /")
				case "status":
					c.Status, _ = s.integer(p, v, "status: 200")
				case "interval":
					c.Interval, _ = s.duration(p, v, "interval: 2s")
				case "timeout":
					c.Timeout, _ = s.duration(p, v, "timeout: 1s")
				case "rise":
					c.Rise, _ = s.integer(p, v, "rise: 2")
				case "fall":
					c.Fall, _ = s.integer(p, v, "fall: 3")
				}
			})
		}
	})
}

// integer reads a whole number.
func (s *source) integer(path string, n *yaml.Node, example string) (int, bool) {
	str, ok := s.scalar(path, n, example)
	if !ok || strings.TrimSpace(str) == "" {
		return 0, false
	}
	i, err := strconv.Atoi(strings.TrimSpace(str))
	if err != nil {
		s.bad[path] = true
		s.errAt(s.resolve(n), "write a whole number, e.g. "+example, "%s %q is not a whole number", describe(path), str)
		return 0, false
	}
	return i, true
}

// cookieNameRE is an RFC 6265 cookie name (an HTTP token).
var cookieNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")

func (v *validator) balancer() {
	c, s := v.c, v.s
	b := c.Balancer
	if b.Role != "" && !s.bad["balancer.role"] {
		switch {
		case b.Role == "none":
			s.errPath("balancer.role", false, "name the role whose nodes serve the balancer's clients, e.g. role: web", "balancer.role cannot be none")
		case !c.RoleKnown(b.Role):
			s.errPath("balancer.role", false, v.roleFix(b.Role), "balancer.role %q is not a known role", b.Role)
		}
	}
	if b.Mode != "" && !slices.Contains(BalancerModes(), b.Mode) {
		s.errPath("balancer.mode", false, enumFix(b.Mode, BalancerModes()), "unknown balancer mode %q", b.Mode)
	}
	if b.Policy != "" && !slices.Contains(BalancerPolicies(), b.Policy) {
		fix := enumFix(b.Policy, BalancerPolicies())
		if strings.HasPrefix(b.Policy, "least") {
			fix = "write policy: least-conn"
		}
		s.errPath("balancer.policy", false, fix, "unknown balancer policy %q", b.Policy)
	}
	if b.StickyCookie != "" {
		switch {
		case !cookieNameRE.MatchString(b.StickyCookie):
			s.errPath("balancer.sticky_cookie", false, "use letters, digits and - _ . (at most 64), e.g. sticky_cookie: PICTLNODE", "balancer.sticky_cookie %q is not a cookie name", b.StickyCookie)
		case b.Mode == "tcp":
			s.errPath("balancer.sticky_cookie", true, "remove it, or use mode: http; a tcp balancer never sees cookies", "balancer.sticky_cookie needs mode http")
		}
	}
	if b.DrainTimeout < 0 || b.DrainTimeout.D() > 10*time.Minute {
		s.errPath("balancer.drain_timeout", false, "write a duration up to 10m, e.g. drain_timeout: 30s", "balancer.drain_timeout %s is out of range", b.DrainTimeout)
	}
	for _, name := range names(s, "balancer.weights", b.Weights) {
		p := "balancer.weights." + name
		if _, ok := c.Nodes[name]; !ok {
			s.errPath(p, true, "give weights to nodes listed under nodes:"+closestHint(name, sortedKeys(c.Nodes)), "balancer.weights names node %s, which is not a node", name)
		}
		if w := b.Weights[name]; (w < 1 || w > 1000) && !s.bad[p] {
			s.errPath(p, false, "write a weight from 1 to 1000 (1 is the default)", "node %s's balancer weight %d is out of range", name, w)
		}
	}
	if t := b.TLS; t != nil {
		for _, f := range []struct{ key, value, example string }{
			{"cert", t.Cert, "/etc/pictl/tls/fullchain.pem"}, {"key", t.Key, "/etc/pictl/tls/privkey.pem"},
		} {
			p := "balancer.tls." + f.key
			switch {
			case f.value == "" && !s.bad[p]:
				s.errPath(p, true, "name the PEM file, e.g. "+f.key+": "+f.example, "balancer.tls needs %s:", f.key)
			case f.value != "":
				v.absPath(p, f.value, f.example)
			}
		}
		if b.Mode == "tcp" {
			s.errPath("balancer.tls", true, "remove tls:, or use mode: http; the tcp balancer passes TLS through untouched", "balancer.tls needs mode http")
		}
		p := c.Ports
		for _, o := range []struct {
			key  string
			port uint16
		}{{"nfs", or0(p.NFS, DefaultNFSPort)}, {"balancer", or0(p.Balancer, DefaultBalancerPort)}, {"agent", or0(p.Agent, DefaultAgentPort)}, {"api", p.API}} {
			if o.port != 0 && o.port == t.TLSPort() {
				s.errPath("balancer.tls.port", false, "give the TLS listener its own port, e.g. port: 443", "balancer.tls.port %d is also the %s port", t.TLSPort(), o.key)
			}
		}
	}
	ch := b.Check
	if ch.Kind != "" && !slices.Contains(BalancerCheckKinds(), ch.Kind) {
		s.errPath("balancer.check.kind", false, enumFix(ch.Kind, BalancerCheckKinds()), "unknown health check kind %q", ch.Kind)
	}
	if ch.Path != "" && (!strings.HasPrefix(ch.Path, "/") || strings.ContainsAny(ch.Path, " \t\r\n")) {
		s.errPath("balancer.check.path", false, "write an absolute request path, e.g. path: /healthz", "balancer.check.path %q is not a request path", ch.Path)
	}
	if ch.Status != 0 && (ch.Status < 100 || ch.Status > 599) && !s.bad["balancer.check.status"] {
		s.errPath("balancer.check.status", false, "write an HTTP status code, e.g. status: 200", "balancer.check.status %d is not an HTTP status", ch.Status)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"interval", ch.Interval}, {"timeout", ch.Timeout}} {
		if d.v < 0 || d.v.D() > time.Hour {
			s.errPath("balancer.check."+d.key, false, "write a positive duration up to 1h, e.g. "+d.key+": 2s", "balancer.check.%s %s is out of range", d.key, d.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"rise", ch.Rise}, {"fall", ch.Fall}} {
		if (n.v < 0 || n.v > 100) && !s.bad["balancer.check."+n.key] {
			s.errPath("balancer.check."+n.key, false, "write a count from 1 to 100", "balancer.check.%s %d is out of range", n.key, n.v)
		}
	}
}

// closestHint is " (did you mean X?)" when a name is close to one of
// names.
func closestHint(name string, names []string) string {
	if c := closest(name, names); c != "" {
		return " (did you mean " + c + "?)"
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func or0(port, def uint16) uint16 {
	if port == 0 {
		return def
	}
	return port
}
