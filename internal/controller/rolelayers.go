package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/internal/agent"
	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

// roleRenderer is what the controller needs of the roles package (see
// rolecatalog.go for the real one; tests fake it).
type roleRenderer interface {
	// Render renders one node's root overlay: hostname, machine-id, the
	// agent's unit and credentials, and its role's target and files.
	Render(in renderInput) (roleTree, error)
	// Known reports whether role is defined.
	Known(role string) bool
	// Packages are the Debian packages the role needs, each a list of
	// alternatives.
	Packages(role string) [][]string
	// Balancer is the port the role offers the balancer.
	Balancer(role string) (port int, ok bool)
	// Target is the systemd target that runs role ("" = none).
	Target(role string) string
}

// roleTree is a rendered tree.
type roleTree interface {
	Hash() string
	WriteDir(dir string) error
}

// renderInput is everything a node's tree may depend on.
type renderInput struct {
	Name    string
	Node    *cluster.Node
	Arch    string
	Cluster *cluster.Cluster
	Addr    func(node string) netip.Addr // the one NodeAddress
	Agent   agentFacts
}

type agentFacts struct {
	URL, Token, BinaryPath string
}

// agentBinaryPath is where the agent binary goes in every node's root.
const agentBinaryPath = "usr/local/lib/pictl/pictl-agent"

// Drainer takes a node out of service before its role layer changes (the
// balancer implements it: no new requests, wait for the running ones).
type Drainer interface {
	Drain(ctx context.Context, role, node string, addr netip.Addr) error
}

// roleLayers renders every node's role layer into a content-addressed
// directory under <state>/roles, hands it to nfsd (through the node
// directory), tells the nodes' agents and keeps what they report. It is
// the controller's component "roles".
type roleLayers struct {
	dir      string // <state>/roles
	renderer func() (roleRenderer, error)
	meta     func(image string) *images.Meta
	addr     func(node string) netip.Addr
	drainers func() []Drainer
	agentURL func(cl *cluster.Cluster) string
	secret   []byte
	binaries agentBinaries
	log      *slog.Logger
	// userDir holds the user's role definitions (beside cluster.yaml);
	// Run re-renders every node when it changes.
	userDir string
	cluster func() *cluster.Cluster

	renderMu sync.Mutex // one render pass at a time
	mu       sync.Mutex
	nodes    map[string]*nodeRole
	members  chan struct{} // closed when any role's membership changes
	// renderedAddrs are the node addresses the last render pass used
	// (roleinputs.go renders again when they change).
	renderedAddrs map[string]netip.Addr
	addressPoll   time.Duration // 0 = defaultAddressPoll
}

// nodeRole is one node's role layer and its agent's word on it.
type nodeRole struct {
	desired agent.Desired
	layer   string // directory of desired.Layer; "" = none
	prev    string // the layer before, kept until the next change
	since   time.Time
	render  time.Duration
	refused string
	changed chan struct{} // closed when desired changes
	reboot  bool          // switch the next change by reboot
	port    int           // the balancer port desired.Role offers, 0 = none

	report     *agent.Report
	reportedAt time.Time
	// The agent's long polls: how many are open, and when it was last
	// heard from (a poll started or answered, a report).
	polls   int
	contact time.Time
}

func newRoleLayers(stateDir string, log *slog.Logger) *roleLayers {
	return &roleLayers{
		dir:     filepath.Join(stateDir, "roles"),
		log:     log,
		nodes:   map[string]*nodeRole{},
		members: make(chan struct{}),
	}
}

func (r *roleLayers) Name() string { return "roles" }

// Run follows the user's role definitions and the nodes' addresses.
func (r *roleLayers) Run(ctx context.Context) error {
	if r.cluster == nil {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.followAddresses(ctx)
	}()
	defer wg.Wait() // a render pass under way finishes before Run returns
	if r.userDir == "" {
		<-ctx.Done()
		return nil
	}
	return watchTree(ctx, r.userDir, func() {
		r.log.Info("role definitions changed; rendering again", "dir", r.userDir)
		if err := r.Reload(ctx, r.cluster()); err != nil {
			r.log.Error("rendering role layers failed", "err", err)
		}
	})
}

// Reload renders every node for the new state.
func (r *roleLayers) Reload(ctx context.Context, cl *cluster.Cluster) error {
	r.renderMu.Lock()
	defer r.renderMu.Unlock()
	rend, err := r.renderer()
	if err != nil {
		// A broken user role file: every node keeps its layer.
		r.log.Error("role definitions rejected; every node keeps its role layer", "err", err)
		r.mu.Lock()
		for name := range cl.Nodes {
			r.entry(name).refused = firstLine(err.Error())
		}
		r.mu.Unlock()
		return nil
	}
	addrs := r.nodeAddrs(cl)
	r.mu.Lock()
	r.renderedAddrs = addrs
	r.mu.Unlock()
	var errs []error
	for _, name := range sortedNodeNames(cl) {
		if err := r.renderNode(ctx, rend, cl, name); err != nil {
			errs = append(errs, err)
		}
	}
	r.mu.Lock()
	for name := range r.nodes {
		if _, ok := cl.Nodes[name]; !ok {
			delete(r.nodes, name)
		}
	}
	r.mu.Unlock()
	r.collectGarbage()
	return errors.Join(errs...)
}

func sortedNodeNames(cl *cluster.Cluster) []string {
	names := make([]string, 0, len(cl.Nodes))
	for n := range cl.Nodes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// entry is node's record, made on first use; r.mu held.
func (r *roleLayers) entry(name string) *nodeRole {
	e := r.nodes[name]
	if e == nil {
		e = &nodeRole{changed: make(chan struct{})}
		r.nodes[name] = e
	}
	return e
}

// renderNode renders one node and, unless refused, makes the result its
// desired layer. A refusal keeps the old layer and says why in the row.
func (r *roleLayers) renderNode(ctx context.Context, rend roleRenderer, cl *cluster.Cluster, name string) error {
	n := cl.Nodes[name]
	role := n.Role
	if role == "none" {
		role = ""
	}
	refuse := func(why string) error {
		r.mu.Lock()
		r.entry(name).refused = why
		r.mu.Unlock()
		r.log.Warn("role refused; the node keeps its role layer", "node", name, "role", role, "why", why)
		return nil
	}
	if role != "" && !rend.Known(role) {
		return refuse(fmt.Sprintf("unknown role %q", role))
	}
	img, _, _ := imageOf(cl, n)
	if why := r.missingPackages(rend, role, img); why != "" {
		return refuse(why)
	}
	arch := nodeArch(cl, n, r.meta(img))
	start := time.Now()
	tree, err := rend.Render(renderInput{
		Name: name, Node: n, Arch: arch, Cluster: cl, Addr: r.addr,
		Agent: agentFacts{URL: r.agentURL(cl), Token: agent.NodeToken(r.secret, name), BinaryPath: agentBinaryPath},
	})
	if err != nil {
		return refuse(firstLine(err.Error()))
	}
	id, dir, err := r.materialise(tree, arch)
	if err != nil {
		return fmt.Errorf("role layer of %s: %w", name, err)
	}
	took := time.Since(start)
	d := agent.Desired{Role: role, Target: rend.Target(role), Layer: id}

	r.mu.Lock()
	e := r.entry(name)
	e.refused = ""
	if e.desired.Layer == id {
		r.mu.Unlock()
		return nil // a no-op reload
	}
	old := e.desired
	r.mu.Unlock()

	if old.Role != "" && old.Role != role {
		r.drain(ctx, rend, old.Role, name)
	}

	r.mu.Lock()
	e.desired = d
	e.port = 0
	if p, ok := rend.Balancer(role); ok && role != "" {
		e.port = p
	}
	e.desired.Reboot = e.reboot
	e.reboot = false
	e.prev, e.layer = e.layer, dir
	e.since, e.render = time.Now(), took
	close(e.changed)
	e.changed = make(chan struct{})
	r.membershipChanged()
	r.mu.Unlock()
	r.log.Info("role layer ready", "node", name, "role", orNoRole(role), "layer", id, "render", took)
	return nil
}

// drain asks every drainer to take node out of role's service first.
func (r *roleLayers) drain(ctx context.Context, rend roleRenderer, role, node string) {
	if _, ok := rend.Balancer(role); !ok || r.drainers == nil {
		return
	}
	for _, d := range r.drainers() {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := d.Drain(dctx, role, node, r.addr(node)); err != nil {
			r.log.Warn("drain failed; switching anyway", "node", node, "role", role, "err", err)
		}
		cancel()
	}
}

// missingPackages is the refusal for a role the image cannot run, with
// the command that fixes it; "" when the image has every package (or its
// package list is unknown: a hand-made root pictl did not import).
func (r *roleLayers) missingPackages(rend roleRenderer, role, img string) string {
	if role == "" {
		return ""
	}
	m := r.meta(img)
	if m == nil || m.Packages == nil {
		return ""
	}
	var lack, install []string
	for _, alts := range rend.Packages(role) {
		if len(alts) == 0 || slices.ContainsFunc(alts, m.HasPackage) {
			continue
		}
		lack = append(lack, strings.Join(alts, "|"))
		install = append(install, alts[0])
	}
	if len(lack) == 0 {
		return ""
	}
	return fmt.Sprintf("role %s needs %s, which image %s lacks: pictl image exec %s -- apt-get install -y %s",
		role, strings.Join(lack, ", "), img, img, strings.Join(install, " "))
}

func imageOf(cl *cluster.Cluster, n *cluster.Node) (string, *cluster.Image, bool) {
	name := n.Image
	if name == "" {
		name, _, _ = cl.DefaultImage()
	}
	img, ok := cl.Images[name]
	return name, img, ok
}

// nodeArch: the node's own setting, its image's, what the image holds.
func nodeArch(cl *cluster.Cluster, n *cluster.Node, m *images.Meta) string {
	if n.Arch != "" {
		return n.Arch
	}
	if _, img, ok := imageOf(cl, n); ok && img.Arch != "" {
		return img.Arch
	}
	if m != nil {
		return m.Arch
	}
	return ""
}

func orNoRole(role string) string {
	if role == "" {
		return "none"
	}
	return role
}

// materialise writes tree (plus the layer's name and the agent binary)
// into <dir>/<id>, where id covers both: the same tree and binary always
// land in the same directory, so a no-op reload or a restart changes
// nothing nfsd serves. The directory appears whole or not at all.
func (r *roleLayers) materialise(tree roleTree, arch string) (id, dir string, err error) {
	bin, digest, binErr := r.binaries.find(arch)
	if binErr != nil {
		r.log.Warn("no agent binary for the node's architecture; its role layer has none", "arch", arch, "err", binErr)
	}
	sum := sha256.Sum256([]byte(tree.Hash() + "\x00" + digest))
	id = hex.EncodeToString(sum[:16])
	dir = filepath.Join(r.dir, id)
	if _, err := os.Stat(dir); err == nil {
		return id, dir, nil
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp(r.dir, ".new-"+id+"-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp) // nothing left after the rename
	if err := tree.WriteDir(tmp); err != nil {
		return "", "", fmt.Errorf("write tree: %w", err)
	}
	idFile := filepath.Join(tmp, agent.LayerIDFile)
	if err := os.MkdirAll(filepath.Dir(idFile), 0o755); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(idFile, []byte(id+"\n"), 0o644); err != nil {
		return "", "", err
	}
	if bin != "" {
		if err := placeBinary(bin, filepath.Join(tmp, agentBinaryPath)); err != nil {
			return "", "", fmt.Errorf("agent binary: %w", err)
		}
	}
	// MkdirTemp made it 0700; the layer's root is the node's /.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(dir); serr == nil {
			return id, dir, nil // another render made the same layer
		}
		return "", "", err
	}
	return id, dir, nil
}

// placeBinary hard-links src to dst (same file system: no copy), else
// copies it.
func placeBinary(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// collectGarbage removes layers no node uses (its current or previous
// layer) and temporary directories a crash left.
func (r *roleLayers) collectGarbage() {
	r.mu.Lock()
	keep := map[string]bool{}
	for _, e := range r.nodes {
		keep[e.layer], keep[e.prev] = true, true
	}
	r.mu.Unlock()
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return
	}
	for _, ent := range ents {
		p := filepath.Join(r.dir, ent.Name())
		if keep[p] {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			r.log.Warn("could not remove an unused role layer", "dir", p, "err", err)
		}
	}
}

// RoleLayer is node's layer directory for nfsd, "" for none.
func (r *roleLayers) RoleLayer(node string) (dir, role string, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.nodes[node]; e != nil {
		return e.layer, e.desired.Role, true
	}
	return "", "", false
}

// --- agent.Coordinator

func (r *roleLayers) Desired(node string) (agent.Desired, <-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[node]
	if e == nil || e.desired.Layer == "" {
		return agent.Desired{}, nil, false
	}
	return e.desired, e.changed, true
}

func (r *roleLayers) Report(node string, rep agent.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[node]
	if e == nil {
		return
	}
	was := e.report
	e.report, e.reportedAt = &rep, time.Now()
	e.contact = e.reportedAt
	if was == nil || was.State != rep.State || was.Layer != rep.Layer {
		r.membershipChanged()
		r.log.Info("agent report", "node", node, "role", orNoRole(rep.Role), "state", rep.State, "failed", rep.Failed, "err", rep.Error)
	}
}

func (r *roleLayers) PollStarted(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.nodes[node]; e != nil {
		e.polls++
		e.contact = time.Now()
	}
}

func (r *roleLayers) PollEnded(node string, answered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.nodes[node]; e != nil {
		e.polls = max(e.polls-1, 0)
		if answered {
			e.contact = time.Now()
		}
	}
}

// An agent with no poll open is lost after agentQuiet, or after
// agentSwitchQuiet while it switches (it polls again once the switch is
// done and reported; a switch by reboot takes a boot).
const (
	agentQuiet       = 15 * time.Second
	agentSwitchQuiet = 5 * time.Minute
)

// SwitchByReboot makes node's next layer change a reboot.
func (r *roleLayers) SwitchByReboot(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entry(node).reboot = true
}

// --- FactSource

func (r *roleLayers) NodeFacts(_ context.Context, name string, _ *cluster.Node, into *api.NodeRuntime) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[name]
	if e == nil {
		return
	}
	into.Role = e.status()
	e.liveness(into.Role, time.Now())
}

// liveness marks st lost when the node's agent, heard from before, has
// gone quiet: no poll open and no word for longer than it ever stays
// quiet. Membership keeps the reported state (the balancer's own checks
// decide about traffic); this is what `node ls` tells the user.
func (e *nodeRole) liveness(st *api.RoleStatus, now time.Time) {
	if e.contact.IsZero() || e.polls > 0 || st.State == api.RoleNotSeen {
		return
	}
	st.LastContact = e.contact
	quiet := now.Sub(e.contact)
	limit := agentQuiet
	if st.State == api.RoleSwitching {
		limit = agentSwitchQuiet
	}
	if quiet > limit {
		st.State = api.RoleLost
		st.Error = fmt.Sprintf("no word from the node's agent for %s", quiet.Round(time.Second))
	}
}

// status is the node's role row as its agent last reported it; r.mu held.
func (e *nodeRole) status() *api.RoleStatus {
	st := &api.RoleStatus{
		Role: e.desired.Role, Target: e.desired.Target, Layer: e.desired.Layer,
		Refused: e.refused, Since: e.since, ReportedAt: e.reportedAt,
		State: api.RoleNotSeen,
	}
	if e.render > 0 {
		st.Stages = map[string]time.Duration{"render": e.render}
	}
	rep := e.report
	if rep == nil {
		return st
	}
	st.Applied = rep.Layer
	if rep.Layer != e.desired.Layer {
		st.State = api.RoleSwitching
		return st
	}
	st.State, st.Failed, st.Error = rep.State, rep.Failed, rep.Error
	if st.Stages == nil {
		st.Stages = map[string]time.Duration{}
	}
	for k, v := range map[string]time.Duration{"layer_visible": rep.Stages.LayerVisible, "reload": rep.Stages.Reload, "isolate": rep.Stages.Isolate, "refresh": rep.Stages.Refresh, "settle": rep.Stages.Settle} {
		if v > 0 {
			st.Stages[k] = v
		}
	}
	return st
}

// agentBinaries finds the agent binary for an architecture: the running
// executable serves its own architecture; the others are its siblings
// pictl-linux-<arch> (make build puts them in bin/).
type agentBinaries struct {
	self     string // os.Executable()
	selfArch string // runtime.GOARCH in Debian's words
	dir      string // where the siblings are; default dir of self

	mu      sync.Mutex
	digests map[string]binDigest
}

type binDigest struct {
	size   int64
	mtime  time.Time
	digest string
}

func (b *agentBinaries) find(arch string) (path, digest string, err error) {
	if arch == "" {
		return "", "none", errors.New("the node's architecture is unknown (set arch: in cluster.yaml)")
	}
	path = b.self
	if arch != b.selfArch || b.self == "" {
		dir := b.dir
		if dir == "" {
			dir = filepath.Dir(b.self)
		}
		path = filepath.Join(dir, "pictl-linux-"+arch)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", "none", fmt.Errorf("%s: %w (make build makes it)", path, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return "", "none", fmt.Errorf("%s is not a file", path)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.digests[path]; ok && d.size == fi.Size() && d.mtime.Equal(fi.ModTime()) {
		return path, d.digest, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "none", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "none", err
	}
	d := binDigest{size: fi.Size(), mtime: fi.ModTime(), digest: hex.EncodeToString(h.Sum(nil))}
	if b.digests == nil {
		b.digests = map[string]binDigest{}
	}
	b.digests[path] = d
	return path, d.digest, nil
}
