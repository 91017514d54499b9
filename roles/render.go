package roles

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Node is what rendering knows about the node being rendered (and, in
// Facts.Nodes, about every node).
type Node struct {
	Name string
	Arch string     // arm64, armhf, amd64
	Addr netip.Addr // the node's current or reserved address (may be invalid)
	MAC  string
	Role string // "" or "none" = no role
}

// Facts are the cluster facts templates may use.
type Facts struct {
	ControllerAddr netip.Addr
	Subnet         netip.Prefix                 // the cluster's subnet (the controller's address and prefix length)
	NFSPort        uint16                       // 0 = 2049
	Volumes        map[string]Volume            // volume name → its export, for the volumes this node may mount
	Nodes          []Node                       // every node, sorted by name
	Vars           map[string]map[string]string // role name → vars from cluster.yaml
	Agent          AgentFacts
}

// Volume is a shared volume served by pictl's nfsd.
type Volume struct {
	Export   string // NFS export path, "/volumes/<name>"; "" = that default
	ReadOnly bool
}

// AgentFacts is what the node's agent needs.
type AgentFacts struct {
	URL        string // the controller's agent listener, http://ADDR:PORT
	Token      string // this node's credential
	BinaryPath string // where the agent binary is placed in the node root; "" = DefaultAgentBinaryPath
}

// Paths and names of what Render writes.
const (
	hostnamePath  = "etc/hostname"
	machineIDPath = "etc/machine-id"
	unitDir       = "etc/systemd/system"
	tmpfilesDir   = "etc/tmpfiles.d"
	// AgentEnvPath holds the agent's credentials (mode 0600).
	AgentEnvPath = "etc/pictl/agent.env"
	agentUnit    = "pictl-agent.service"
	// DefaultAgentBinaryPath is where the controller places the agent
	// binary in a node's root unless Facts.Agent.BinaryPath says otherwise.
	DefaultAgentBinaryPath = "usr/local/lib/pictl/pictl-agent"
	// AgentUnit is the agent's systemd unit, enabled on every node.
	AgentUnit = agentUnit
	// multiUserTarget is where a node without a role boots, as the path
	// systemctl set-default writes (valid on merged and split /usr).
	multiUserTargetPath = "/lib/systemd/system/multi-user.target"
	defaultNFSPort      = 2049
)

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// Render computes the files node gets from its role: a pure function of
// its arguments and the catalog (no clock, no map order, no file system).
//
// Every node gets etc/hostname, etc/machine-id (derived from its name),
// the agent's unit (enabled in multi-user.target) and credentials, and
// masks for the units other roles want and its own does not (so nginx
// installed into a shared image does not run on a db node). A node with a
// role also gets the role's target (default.target points at it), its
// units' drop-ins (PartOf= the target, so stopping the target stops them),
// mount units for its volumes, its tmpfiles.d lines with a service that
// applies them on a live switch, and its config files.
func (c *Catalog) Render(node Node, f Facts) (*Tree, error) {
	t, err := c.render(node, f)
	if err != nil {
		role := node.Role
		if role == "" {
			role = NoRole
		}
		return nil, fmt.Errorf("render role %s for node %s: %w", role, node.Name, err)
	}
	return t, nil
}

func (c *Catalog) render(node Node, f Facts) (*Tree, error) {
	if !hostnameRE.MatchString(node.Name) {
		return nil, fmt.Errorf("node name %q is not a host name", node.Name)
	}
	var r *Role
	if node.Role != "" && node.Role != NoRole {
		var ok bool
		if r, ok = c.roles[node.Role]; !ok {
			return nil, fmt.Errorf("unknown role %q (known: %s, %s)", node.Role, strings.Join(c.names, ", "), NoRole)
		}
	}
	b := newTreeBuilder()
	if err := c.renderBase(b, node, f, r); err != nil {
		return nil, err
	}
	if r == nil {
		if err := b.symlink(path.Join(unitDir, "default.target"), multiUserTargetPath); err != nil {
			return nil, err
		}
		return b.tree(), nil
	}
	if err := r.render(b, node, f, c.offers()); err != nil {
		return nil, err
	}
	return b.tree(), nil
}

// offers is what each role offers the balancer, for templates that front
// another role's nodes (the lb role's HAProxy).
func (c *Catalog) offers() map[string]Offer {
	out := map[string]Offer{}
	for name, r := range c.roles {
		if r.balancer != nil {
			out[name] = Offer{Port: r.balancer.port, Check: r.balancer.check}
		}
	}
	return out
}

// MachineID is the node's /etc/machine-id: stable for a name, distinct
// between names, so journals and DHCP client IDs stay the node's own
// across image changes and resets.
func MachineID(name string) string {
	sum := sha256.Sum256([]byte("pictl machine-id\x00" + name))
	return hex.EncodeToString(sum[:16])
}

// renderBase writes what every node gets, whatever its role.
func (c *Catalog) renderBase(b *treeBuilder, node Node, f Facts, r *Role) error {
	if err := b.file(hostnamePath, 0o644, []byte(node.Name+"\n")); err != nil {
		return err
	}
	if err := b.file(machineIDPath, 0o444, []byte(MachineID(node.Name)+"\n")); err != nil {
		return err
	}
	env, err := agentEnv(node, f.Agent)
	if err != nil {
		return err
	}
	if err := b.file(AgentEnvPath, 0o600, env); err != nil {
		return err
	}
	agent, err := agentUnitFile(f.Agent)
	if err != nil {
		return err
	}
	if err := b.file(unitPath(agentUnit), 0o644, agent); err != nil {
		return err
	}
	if err := b.symlink(unitPath("multi-user.target.wants/"+agentUnit), "../"+agentUnit); err != nil {
		return err
	}
	for _, u := range c.masks(r) {
		if err := b.symlink(unitPath(u), "/dev/null"); err != nil {
			return err
		}
	}
	return nil
}

// masks lists the units some other role wants and r (nil: no role) does
// not, except those marked shared.
func (c *Catalog) masks(r *Role) []string {
	var out []string
	for _, other := range c.roles {
		if other == r {
			continue
		}
		for name, u := range other.units {
			if u.shared {
				continue
			}
			if r != nil {
				if _, mine := r.units[name]; mine {
					continue
				}
			}
			out = appendNew(out, name)
			// A package that enables a socket for its service (Debian's
			// mariadb-server enables mariadb.socket) would keep the port
			// open on every node, and the first connection would try to
			// start the masked service: the socket goes with it.
			if base, ok := strings.CutSuffix(name, ".service"); ok && !strings.HasSuffix(base, "@") {
				socket := base + ".socket"
				if _, mine := ownUnits(r)[socket]; !mine && !c.sharedUnit(socket) {
					out = appendNew(out, socket)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// ownUnits is the units r wants (none for no role).
func ownUnits(r *Role) map[string]*unitDef {
	if r == nil {
		return nil
	}
	return r.units
}

// sharedUnit reports whether some role marks the unit shared.
func (c *Catalog) sharedUnit(name string) bool {
	for _, r := range c.roles {
		if u, ok := r.units[name]; ok && u.shared {
			return true
		}
	}
	return false
}

func agentEnv(node Node, a AgentFacts) ([]byte, error) {
	var b strings.Builder
	for _, kv := range [][2]string{{"PICTL_AGENT_URL", a.URL}, {"PICTL_AGENT_TOKEN", a.Token}, {"PICTL_NODE", node.Name}} {
		v, err := envValue(kv[0], kv[1])
		if err != nil {
			return nil, err
		}
		b.WriteString(kv[0] + "=" + v + "\n")
	}
	return []byte(b.String()), nil
}

var plainEnvRE = regexp.MustCompile(`^[A-Za-z0-9_./:@+=,-]*$`)

// envValue writes a value for systemd's EnvironmentFile=: plain when it
// can be, double-quoted with \ and " escaped otherwise.
func envValue(name, v string) (string, error) {
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("%s has a line break", name)
	}
	if plainEnvRE.MatchString(v) {
		return v, nil
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`).Replace(v) + `"`, nil
}

func agentUnitFile(a AgentFacts) ([]byte, error) {
	bin := a.BinaryPath
	if bin == "" {
		bin = DefaultAgentBinaryPath
	}
	bin = strings.TrimPrefix(bin, "/")
	if err := checkPath(bin); err != nil || strings.ContainsAny(bin, " \t\"'\\") {
		return nil, fmt.Errorf("agent binary path %q is not a plain path in the node root", a.BinaryPath)
	}
	var u unitFile
	u.set("Unit", "Description", "pictl agent: applies this node's role")
	u.set("Unit", "Wants", "network-online.target")
	u.set("Unit", "After", "network-online.target")
	// The agent isolates role targets; it must not stop itself doing so.
	u.set("Unit", "IgnoreOnIsolate", "yes")
	u.set("Service", "EnvironmentFile", "/"+AgentEnvPath)
	u.setData("Service", "ExecStart", "/"+bin+" agent")
	u.set("Service", "Restart", "always")
	u.set("Service", "RestartSec", "2s")
	u.set("Install", "WantedBy", "multi-user.target")
	return u.bytes()
}

// render writes the role's part of the tree.
func (r *Role) render(b *treeBuilder, node Node, f Facts, offers map[string]Offer) error {
	vars, err := r.resolveVars(f.Vars[r.name])
	if err != nil {
		return err
	}
	target := TargetName(r.name)
	data := templateData{
		Node:       templateNode{node},
		Role:       r.name,
		Vars:       vars,
		Controller: f.ControllerAddr,
		NFSPort:    nfsPort(f),
		Mounts:     map[string]string{},
		Nodes:      slices.Clone(f.Nodes),
		Subnet:     f.Subnet.Masked(),
		offers:     offers,
	}
	slices.SortFunc(data.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	if r.balancer != nil {
		data.Balancer.Port = r.balancer.port
	}
	for vol, m := range r.mounts {
		data.Mounts[vol] = m.path
	}

	var wants []string
	for _, vol := range sortedKeys(r.mounts) {
		name, err := r.renderMount(b, vol, target, f)
		if err != nil {
			return err
		}
		wants = append(wants, name)
	}
	units := r.Units()
	if len(r.tmpfiles) > 0 {
		name, err := r.renderTmpfiles(b, target, units, data)
		if err != nil {
			return err
		}
		wants = append(wants, name)
	}
	for _, name := range units {
		if err := r.renderUnit(b, name, target, data); err != nil {
			return err
		}
		wants = append(wants, name)
	}
	for _, p := range sortedKeys(r.files) {
		fd := r.files[p]
		if fd.remove {
			if err := b.whiteout(p); err != nil {
				return err
			}
			continue
		}
		text, err := fd.tmpl.execute(data)
		if err != nil {
			return err
		}
		if err := b.file(p, fd.mode, []byte(text)); err != nil {
			return err
		}
	}

	var t unitFile
	desc := "pictl role " + r.name
	if r.description != "" {
		desc += ": " + r.description
	}
	t.setData("Unit", "Description", desc)
	t.set("Unit", "Requires", "multi-user.target")
	t.set("Unit", "After", "multi-user.target")
	t.set("Unit", "AllowIsolate", "yes")
	for _, w := range wants {
		t.set("Unit", "Wants", w)
	}
	text, err := t.bytes()
	if err != nil {
		return err
	}
	if err := b.file(unitPath(target), 0o644, text); err != nil {
		return err
	}
	return b.symlink(unitPath("default.target"), target)
}

func nfsPort(f Facts) uint16 {
	if f.NFSPort == 0 {
		return defaultNFSPort
	}
	return f.NFSPort
}

// renderMount writes the mount unit of one volume and returns its name.
// The options are the ones pictl's nfsd needs: NFSv3 over TCP with MOUNT
// on the NFS port (no portmapper), no NLM (nolock), no NFSACL probe
// (noacl), and addr= so that the kernel can mount without mount.nfs.
func (r *Role) renderMount(b *treeBuilder, vol, target string, f Facts) (string, error) {
	m := r.mounts[vol]
	v, ok := f.Volumes[vol]
	if !ok {
		return "", fmt.Errorf("role %s mounts volume %s, which this node may not mount: declare it in cluster.yaml (volumes: {%s: {roles: [%s]}}; pictl init declares www) and let the node's role or name in its roles:/nodes:", r.name, vol, vol, r.name)
	}
	if v.ReadOnly && !m.readOnly {
		return "", fmt.Errorf("role %s mounts volume %s read-write, but the volume is read-only in cluster.yaml", r.name, vol)
	}
	if !f.ControllerAddr.IsValid() {
		return "", fmt.Errorf("role %s mounts volume %s, but the controller's address is unknown", r.name, vol)
	}
	export := v.Export
	if export == "" {
		export = "/volumes/" + vol
	}
	if !strings.HasPrefix(export, "/") || strings.ContainsAny(export, " \t\r\n\x00") {
		return "", fmt.Errorf("volume %s's export %q is not an absolute path", vol, export)
	}
	mode := "rw"
	if m.readOnly {
		mode = "ro"
	}
	port := strconv.Itoa(int(nfsPort(f)))
	name := mountUnitName(m.path)
	var u unitFile
	u.setData("Unit", "Description", "pictl volume "+vol+" for role "+r.name)
	u.set("Unit", "StopWhenUnneeded", "yes")
	u.set("Unit", "PartOf", target)
	u.setData("Mount", "What", addrForMount(f.ControllerAddr)+":"+export)
	u.setData("Mount", "Where", m.path)
	u.set("Mount", "Type", "nfs")
	u.set("Mount", "Options", "vers=3,proto=tcp,port="+port+",mountport="+port+",nolock,noacl,addr="+f.ControllerAddr.String()+","+mode)
	text, err := u.bytes()
	if err != nil {
		return "", err
	}
	return name, b.file(unitPath(name), 0o644, text)
}

func addrForMount(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return a.Unmap().String()
}

// renderTmpfiles writes the role's tmpfiles.d file and a service that
// applies it on a live switch (at boot systemd-tmpfiles-setup does), and
// returns the service's name.
func (r *Role) renderTmpfiles(b *treeBuilder, target string, units []string, data templateData) (string, error) {
	var lines strings.Builder
	for _, t := range r.tmpfiles {
		line, err := t.execute(data)
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(line, "\r\n") {
			return "", fmt.Errorf("%s:%d: a tmpfiles line renders to several lines", t.file, t.line)
		}
		lines.WriteString(line + "\n")
	}
	conf := path.Join(tmpfilesDir, "pictl-role-"+r.name+".conf")
	if err := b.file(conf, 0o644, []byte(lines.String())); err != nil {
		return "", err
	}
	name := "pictl-role-" + r.name + "-tmpfiles.service"
	var u unitFile
	u.setData("Unit", "Description", "pictl role "+r.name+": create its tmpfiles.d entries")
	u.set("Unit", "PartOf", target)
	for _, w := range units {
		u.set("Unit", "Before", w)
	}
	u.set("Service", "Type", "oneshot")
	u.set("Service", "RemainAfterExit", "yes")
	// /bin is /usr/bin on merged-/usr systems and the real place on older ones.
	u.setData("Service", "ExecStart", "/bin/systemd-tmpfiles --create /"+conf)
	text, err := u.bytes()
	if err != nil {
		return "", err
	}
	return name, b.file(unitPath(name), 0o644, text)
}

// renderUnit writes a unit's pictl.conf drop-in (and the unit itself when
// the role defines it).
func (r *Role) renderUnit(b *treeBuilder, name, target string, data templateData) error {
	u := r.units[name]
	var d unitFile
	if !u.shared {
		// A shared unit (ssh) runs under every role: PartOf= would stop
		// it with the old role's target on a switch, and the isolate
		// start it again — a blip of the service for nothing.
		d.set("Unit", "PartOf", target)
	}
	if len(u.mounts) > 0 {
		var paths []string
		for _, vol := range u.mounts {
			paths = append(paths, specifierEscape(r.mounts[vol].path))
		}
		d.set("Unit", "RequiresMountsFor", strings.Join(paths, " "))
	}
	if err := addSections(&d, u.dropin, data); err != nil {
		return err
	}
	text, err := d.bytes()
	if err != nil {
		return fmt.Errorf("drop-in for %s: %w", name, err)
	}
	if len(text) > 0 {
		if err := b.file(unitPath(name+".d/pictl.conf"), 0o644, text); err != nil {
			return err
		}
	}
	if u.unit == nil {
		return nil
	}
	var own unitFile
	if err := addSections(&own, u.unit, data); err != nil {
		return err
	}
	text, err = own.bytes()
	if err != nil {
		return fmt.Errorf("unit %s: %w", name, err)
	}
	return b.file(unitPath(name), 0o644, text)
}

func addSections(u *unitFile, sections []unitSection, data templateData) error {
	for _, s := range sections {
		for _, l := range s.lines {
			v, err := l.value.execute(data)
			if err != nil {
				return err
			}
			if err := checkUnitValue(l.key, v); err != nil {
				return &Error{File: l.value.file, Line: l.value.line, Column: l.value.col, Msg: err.Error()}
			}
			u.set(s.name, l.key, v)
		}
	}
	return nil
}
