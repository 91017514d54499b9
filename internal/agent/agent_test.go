package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCoordinator is the controller's side in memory: one node's desired
// state and every report it got.
type testCoordinator struct {
	mu      sync.Mutex
	desired Desired
	changed chan struct{}
	reports chan Report
	polls   chan string // "start", "answered", "dropped"
}

func newTestCoordinator(d Desired) *testCoordinator {
	return &testCoordinator{desired: d, changed: make(chan struct{}), reports: make(chan Report, 16), polls: make(chan string, 64)}
}

func (c *testCoordinator) Desired(node string) (Desired, <-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.desired, c.changed, node == "pi3"
}

func (c *testCoordinator) Report(_ string, r Report) { c.reports <- r }
func (c *testCoordinator) PollStarted(string)        { c.poll("start") }
func (c *testCoordinator) PollEnded(_ string, answered bool) {
	if answered {
		c.poll("answered")
	} else {
		c.poll("dropped")
	}
}

func (c *testCoordinator) poll(ev string) {
	select {
	case c.polls <- ev:
	default: // nobody is looking
	}
}

func (c *testCoordinator) set(d Desired) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.desired = d
	close(c.changed)
	c.changed = make(chan struct{})
}

// fakeSystemd plays systemd: isolating a target makes it and its units
// take the states in outcome.
type fakeSystemd struct {
	mu       sync.Mutex
	active   string              // the active target
	wants    map[string][]string // target -> units
	outcome  map[string]string   // unit -> state after an isolate ("" = active)
	calls    []string
	isolated chan string

	pendingJobs int // Jobs reports one job this many more times
	jobLooks    int
}

func (f *fakeSystemd) Reload(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "reload")
	return nil
}

func (f *fakeSystemd) Isolate(_ context.Context, target string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "isolate "+target)
	f.active = target
	f.pendingJobs = 2 // the old role's units are still stopping
	return "done", nil
}

func (f *fakeSystemd) Units(_ context.Context, target string) ([]UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	state := func(u string) string {
		if f.active != target {
			return "inactive"
		}
		if s := f.outcome[u]; s != "" {
			return s
		}
		return "active"
	}
	out := []UnitState{{Name: target, Active: state(target)}}
	for _, u := range f.wants[target] {
		out = append(out, UnitState{Name: u, Active: state(u)})
	}
	return out, nil
}

// Stop records the units the agent stops.
func (f *fakeSystemd) Stop(_ context.Context, units []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+strings.Join(units, " "))
	if slices.Contains(units, f.active) {
		f.active = ""
	}
	return units, nil
}

// StopMasked records that the agent asked.
func (f *fakeSystemd) StopMasked(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop-masked")
	return nil, nil
}

// Jobs: the first look after an isolate still sees a stop job running.
func (f *fakeSystemd) Jobs(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobLooks++
	if f.pendingJobs > 0 {
		f.pendingJobs--
		return 1, nil
	}
	return 0, nil
}

// Stop records the call.

// Refresh records the call; the target's units keep their states.
func (f *fakeSystemd) Refresh(_ context.Context, target string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "refresh "+target)
	if f.active != target {
		return nil, fmt.Errorf("%s is not active", target)
	}
	return f.wants[target], nil
}

func (f *fakeSystemd) Reboot(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "reboot")
	return nil
}

func (f *fakeSystemd) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// node is an agent on a fake root, talking to a real HTTP listener.
type node struct {
	root  string
	coord *testCoordinator
	sd    *fakeSystemd
	agent *Agent
	srv   *httptest.Server
}

func newNode(t *testing.T, d Desired, sd *fakeSystemd) *node {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	coord := newTestCoordinator(d)
	l := &Listener{Secret: secret, Coordinator: coord, MaxWait: time.Minute}
	srv := httptest.NewServer(l.Handler())
	t.Cleanup(srv.Close)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, filepath.Dir(LayerIDFile)), 0o755)
	return &node{root: root, coord: coord, sd: sd, srv: srv, agent: &Agent{
		Client:  &Client{URL: srv.URL, Node: "pi3", Token: NodeToken(secret, "pi3")},
		Systemd: sd, Root: root, Tick: time.Millisecond, Retry: time.Millisecond,
	}}
}

func (n *node) showLayer(t *testing.T, id string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(n.root, LayerIDFile), []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (n *node) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// nextFinal skips "switching" reports.
func (n *node) nextFinal(t *testing.T) Report {
	t.Helper()
	for {
		select {
		case r := <-n.coord.reports:
			if r.State != StateSwitching {
				return r
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no report from the agent")
		}
	}
}

func web(layer string) Desired {
	return Desired{Role: "web", Target: "pictl-role-web.target", Layer: layer}
}

// A node that booted into its role is reported on, not switched again;
// a new layer is waited for until NFS shows it, then systemd reloads and
// isolates the new target, and the report names a failed unit.
func TestAgentSwitches(t *testing.T) {
	sd := &fakeSystemd{
		active:  "pictl-role-web.target",
		wants:   map[string][]string{"pictl-role-web.target": {"nginx.service", "mnt-www.mount"}, "pictl-role-db.target": {"mariadb.service"}},
		outcome: map[string]string{"mariadb.service": "failed"},
	}
	n := newNode(t, web("L1"), sd)
	n.showLayer(t, "L1")
	n.run(t)

	r := n.nextFinal(t)
	if r.State != StateActive || r.Layer != "L1" || len(r.Units) != 3 || r.Failed != "" {
		t.Fatalf("boot report: %+v", r)
	}
	if c := sd.callList(); len(c) != 0 {
		t.Fatalf("a node already in its role was switched: %q", c)
	}

	// The controller moves pi3 to db; NFS still shows the old layer.
	n.coord.set(Desired{Role: "db", Target: "pictl-role-db.target", Layer: "L2"})
	select {
	case r := <-n.coord.reports:
		if r.State != StateSwitching {
			t.Fatalf("first report after the change: %+v, want switching", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no switching report")
	}
	if c := sd.callList(); len(c) != 0 {
		t.Fatalf("systemd touched before the layer showed: %q", c)
	}
	n.showLayer(t, "L2")
	r = n.nextFinal(t)
	if r.State != StateFailed || r.Failed != "mariadb.service" || r.Target != "pictl-role-db.target" || r.Layer != "L2" {
		t.Fatalf("db report: %+v", r)
	}
	// The old target is stopped before the reload (its units' ExecStop=
	// still loaded); its mounts that db does not want are stopped after
	// the isolate too (systemd leaves mount units alone on isolate).
	if c := sd.callList(); !slices.Equal(c, []string{"stop pictl-role-web.target", "reload", "isolate pictl-role-db.target", "stop-masked", "stop mnt-www.mount"}) {
		t.Fatalf("systemd calls: %q", c)
	}
	sd.mu.Lock()
	if sd.pendingJobs != 0 || sd.jobLooks < 3 {
		t.Errorf("reported before systemd's jobs were done (%d left, %d looks)", sd.pendingJobs, sd.jobLooks)
	}
	sd.mu.Unlock()

	// Back to web: everything active.
	n.showLayer(t, "L3")
	n.coord.set(web("L3"))
	r = n.nextFinal(t)
	if r.State != StateActive || r.Target != "pictl-role-web.target" || r.Layer != "L3" {
		t.Fatalf("web report: %+v", r)
	}
}

// A new layer of the role the node runs (the lb node's HAProxy servers
// changed) is applied by reloading, never by an isolate: the services
// keep running. A different role after it is isolated again.
func TestAgentRefreshesSameRole(t *testing.T) {
	lb := func(layer string) Desired {
		return Desired{Role: "lb", Target: "pictl-role-lb.target", Layer: layer}
	}
	sd := &fakeSystemd{
		active: "pictl-role-lb.target",
		wants:  map[string][]string{"pictl-role-lb.target": {"haproxy.service", "keepalived.service"}},
	}
	n := newNode(t, lb("L1"), sd)
	n.showLayer(t, "L1")
	n.run(t)
	if r := n.nextFinal(t); r.State != StateActive {
		t.Fatalf("boot report: %+v", r)
	}
	n.showLayer(t, "L2")
	n.coord.set(lb("L2"))
	r := n.nextFinal(t)
	if r.State != StateActive || r.Layer != "L2" || r.Stages.Isolate != 0 {
		t.Fatalf("refresh report: %+v", r)
	}
	if c := sd.callList(); !slices.Equal(c, []string{"reload", "refresh pictl-role-lb.target", "stop-masked"}) {
		t.Fatalf("systemd calls for a same-role layer: %q", c)
	}
	n.showLayer(t, "L3")
	n.coord.set(web("L3"))
	if r := n.nextFinal(t); r.Target != "pictl-role-web.target" {
		t.Fatalf("web report: %+v", r)
	}
	if c := sd.callList(); !slices.Contains(c, "isolate pictl-role-web.target") {
		t.Fatalf("a role change was not isolated: %q", c)
	}
}

// A node without a role runs multi-user.target, which wants oneshots that
// ran and are inactive again: that is active; a failed unit is not.
func TestAgentNoRoleIgnoresFinishedOneshots(t *testing.T) {
	none := Desired{Role: "", Target: "multi-user.target", Layer: "L2"}
	for _, tc := range []struct {
		state, want, failed string
	}{
		{"inactive", StateActive, ""},
		{"failed", StateFailed, "e2scrub_reap.service"},
	} {
		sd := &fakeSystemd{
			active:  "pictl-role-web.target",
			wants:   map[string][]string{"multi-user.target": {"e2scrub_reap.service", "ssh.service"}},
			outcome: map[string]string{"e2scrub_reap.service": tc.state},
		}
		n := newNode(t, web("L1"), sd)
		n.showLayer(t, "L1")
		n.run(t)
		n.nextFinal(t)
		n.showLayer(t, "L2")
		n.coord.set(none)
		if r := n.nextFinal(t); r.State != tc.want || r.Failed != tc.failed {
			t.Errorf("e2scrub_reap %s: report %+v, want %s %q", tc.state, r, tc.want, tc.failed)
		}
	}
}

// A layer that never shows through NFS fails the switch with a reason
// and leaves systemd alone.
func TestAgentLayerNeverVisible(t *testing.T) {
	sd := &fakeSystemd{active: "multi-user.target"}
	n := newNode(t, web("L9"), sd)
	n.agent.LayerTimeout = 20 * time.Millisecond
	n.showLayer(t, "L1")
	n.run(t)
	r := n.nextFinal(t)
	if r.State != StateFailed || !strings.Contains(r.Error, "did not show through NFS") || !strings.Contains(r.Error, "holds L1") {
		t.Fatalf("report: %+v", r)
	}
	if c := sd.callList(); len(c) != 0 {
		t.Fatalf("systemd calls: %q", c)
	}
}

// --reboot: the agent reboots instead of isolating; after the reboot it
// waits for the boot's jobs, finds the target active and reports — and
// when the target did not come up, isolates it: it never reboots again
// (a node in a reboot loop never reports).
func TestAgentReboot(t *testing.T) {
	sd := &fakeSystemd{active: "pictl-role-web.target"}
	n := newNode(t, web("L1"), sd)
	n.showLayer(t, "L1")
	n.run(t)
	if r := n.nextFinal(t); r.State != StateActive {
		t.Fatalf("boot report: %+v", r)
	}
	d := Desired{Role: "db", Target: "pictl-role-db.target", Layer: "L2", Reboot: true}
	n.showLayer(t, "L2")
	n.coord.set(d)
	for !slices.Contains(sd.callList(), "reboot") {
		select {
		case <-n.coord.reports:
		case <-time.After(30 * time.Second):
			t.Fatalf("no reboot; calls %q", sd.callList())
		}
	}
	if c := sd.callList(); slices.Contains(c, "isolate pictl-role-db.target") {
		t.Fatalf("isolated although asked to reboot: %q", c)
	}

	for _, tc := range []struct {
		name   string
		active string // the target the boot reached
		want   []string
	}{
		{"booted into db", "pictl-role-db.target", nil},
		{"db did not come up", "multi-user.target", []string{"reload", "isolate pictl-role-db.target", "stop-masked"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The new boot: a fresh agent, the desired switch still marked
			// reboot, systemd busy with the boot for a while.
			sd := &fakeSystemd{active: tc.active, pendingJobs: 5}
			n := newNode(t, d, sd)
			n.showLayer(t, "L2")
			n.run(t)
			r := n.nextFinal(t)
			if r.State != StateActive || r.Layer != "L2" {
				t.Errorf("report after the reboot: %+v", r)
			}
			if c := sd.callList(); !slices.Equal(c, tc.want) {
				t.Errorf("systemd calls after the reboot: %q, want %q", c, tc.want)
			}
			sd.mu.Lock()
			defer sd.mu.Unlock()
			if sd.pendingJobs != 0 {
				t.Errorf("judged the target with %d boot jobs queued", sd.pendingJobs)
			}
		})
	}
}

// The listener takes only the node's own token.
func TestListenerAuth(t *testing.T) {
	n := newNode(t, web("L1"), &fakeSystemd{})
	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"own token", "/v1/agent/pi3/desired", n.agent.Client.Token, http.StatusOK},
		{"no token", "/v1/agent/pi3/desired", "", http.StatusUnauthorized},
		{"another node's token", "/v1/agent/pi3/desired", NodeToken([]byte("0123456789abcdef0123456789abcdef"), "pi4"), http.StatusUnauthorized},
		{"token for an unknown node", "/v1/agent/pi4/desired", NodeToken([]byte("0123456789abcdef0123456789abcdef"), "pi4"), http.StatusNotFound},
		{"bad wait", "/v1/agent/pi3/desired?wait=soon", n.agent.Client.Token, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, n.srv.URL+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// The listener tells the coordinator when a long poll starts and ends, and
// whether it was answered or its connection went away first.
func TestListenerFollowsPolls(t *testing.T) {
	n := newNode(t, Desired{Role: "web", Target: "pictl-web.target", Layer: "L1"}, &fakeSystemd{})
	next := func() string {
		t.Helper()
		select {
		case ev := <-n.coord.polls:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no poll event")
			return ""
		}
	}
	if _, err := n.agent.Client.Desired(context.Background(), "L1", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if a, b := next(), next(); a != "start" || b != "answered" {
		t.Fatalf("timed-out poll: %s, %s", a, b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := n.agent.Client.Desired(ctx, "L1", time.Minute); errc <- err }()
	if ev := next(); ev != "start" {
		t.Fatalf("poll: %s", ev)
	}
	cancel() // the node goes away mid-poll
	<-errc
	if ev := next(); ev != "dropped" {
		t.Fatalf("poll whose connection closed: %s, want dropped", ev)
	}
}
