package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/testnet"
)

// cli runs pictl in-process against one temp cluster.yaml.
type cliEnv struct {
	t      *testing.T
	dir    string
	config string
	socket string
}

func newEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir := t.TempDir()
	e := &cliEnv{t: t, dir: dir, config: filepath.Join(dir, "cluster.yaml"), socket: filepath.Join(dir, "pictl.sock")}
	return e
}

// run returns stdout and the error; stderr is folded into the error text.
func (e *cliEnv) run(args ...string) (string, error) {
	e.t.Helper()
	return e.runCtx(context.Background(), args...)
}

func (e *cliEnv) runCtx(ctx context.Context, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	full := append([]string{"pictl", "--config", e.config, "--socket", e.socket}, args...)
	app := newApp(&out, &errOut)
	err := app.RunContext(ctx, interspersed(app, full))
	return out.String(), err
}

func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	out, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("pictl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (e *cliEnv) fails(wantErr string, args ...string) {
	e.t.Helper()
	_, err := e.run(args...)
	if err == nil {
		e.t.Fatalf("pictl %s: succeeded, want error containing %q", strings.Join(args, " "), wantErr)
	}
	if !strings.Contains(err.Error(), wantErr) {
		e.t.Fatalf("pictl %s: error %q, want it to contain %q", strings.Join(args, " "), err, wantErr)
	}
}

func (e *cliEnv) init() {
	e.t.Helper()
	e.ok("init", "--interface", "br0", "--address", "10.99.0.1/24", "--range", "10.99.0.100-10.99.0.199", "--state-dir", filepath.Join(e.dir, "state"))
}

func TestInitRefusesOverwrite(t *testing.T) {
	e := newEnv(t)
	e.init()
	before, _ := os.ReadFile(e.config)
	if !bytes.Contains(before, []byte("#")) {
		t.Errorf("cluster.yaml from init has no comments:\n%s", before)
	}
	e.fails("exists", "init")
	after, _ := os.ReadFile(e.config)
	if !bytes.Equal(before, after) {
		t.Error("a refused init changed the file")
	}
}

func TestNodeLifecycle(t *testing.T) {
	e := newEnv(t)
	e.init()
	if got := e.ok("node", "add", "pi3", "--mac", "DC-A6-32-01-36-C2", "--serial", "9FFEFDEF", "--ip", "10.99.0.13"); got != "pi3: added\n" {
		t.Errorf("node add printed %q", got)
	}
	e.ok("node", "add", "pi10", "--mac", "dc:a6:32:01:36:10")
	e.ok("node", "add", "pi2", "--mac", "dc:a6:32:01:36:02", "--netboot=false")

	want := "NAME  MAC                IP          IMAGE  ROLE  NETBOOT  LEASE  STAGE  SEEN\n" +
		"pi2   dc:a6:32:01:36:02  -           -      -     off      -      -      -\n" +
		"pi3   dc:a6:32:01:36:c2  10.99.0.13  -      -     on       -      -      -\n" +
		"pi10  dc:a6:32:01:36:10  -           -      -     on       -      -      -\n"
	if got := e.ok("node", "ls"); got != want {
		t.Errorf("node ls:\n%s\nwant:\n%s", got, want)
	}

	var rows []api.Node
	if err := json.Unmarshal([]byte(e.ok("node", "ls", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[1].Name != "pi3" || rows[1].Serial != "9ffefdef" || rows[1].Runtime != nil {
		t.Errorf("node ls -o json: %+v", rows)
	}
	if got := e.ok("node", "ls", "-o", "yaml"); !strings.Contains(got, "- name: pi2\n") {
		t.Errorf("node ls -o yaml:\n%s", got)
	}

	if got := e.ok("node", "set", "pi3", "--ip", "10.99.0.23", "--model", "pi4"); got != "pi3: model none → pi4\npi3: ip 10.99.0.13 → 10.99.0.23\n" {
		t.Errorf("node set printed %q", got)
	}
	if got := e.ok("node", "set", "pi3", "--ip", ""); got != "pi3: ip 10.99.0.23 → none\n" {
		t.Errorf("node set --ip '' printed %q", got)
	}
	show := e.ok("node", "show", "pi3")
	for _, w := range []string{"serial:", "9ffefdef", "model:", "pi4", "controller not running"} {
		if !strings.Contains(show, w) {
			t.Errorf("node show lacks %q:\n%s", w, show)
		}
	}
	if got := e.ok("node", "rm", "pi10"); got != "pi10: removed\n" {
		t.Errorf("node rm printed %q", got)
	}
	e.fails("no node named pi10", "node", "show", "pi10")
}

func TestNodeErrors(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2", "--ip", "10.99.0.13")
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"not a MAC address", []string{"node", "add", "pi4", "--mac", "dc:a6:32"}},
		{"already exists", []string{"node", "add", "pi3", "--mac", "dc:a6:32:01:36:c9"}},
		{"dc:a6:32:01:36:c2", []string{"node", "add", "pi4", "--mac", "dc:a6:32:01:36:c2"}},
		{"10.99.0.13", []string{"node", "add", "pi4", "--mac", "dc:a6:32:01:36:c4", "--ip", "10.99.0.13"}},
		{"10.98.0.4", []string{"node", "add", "pi4", "--mac", "dc:a6:32:01:36:c4", "--ip", "10.98.0.4"}},
		{"not an IPv4 address", []string{"node", "add", "pi4", "--mac", "dc:a6:32:01:36:c4", "--ip", "ten"}},
		{"rpi-os", []string{"node", "add", "pi4", "--mac", "dc:a6:32:01:36:c4", "--image", "rpi-os"}},
		{"no node named pi9", []string{"node", "set", "pi9", "--role", "web"}},
		{"nothing to change", []string{"node", "set", "pi3"}},
		{"no node named pi9", []string{"node", "rm", "pi9"}},
		{"expected one NAME", []string{"node", "add", "--mac", "dc:a6:32:01:36:c4"}},
		{"unknown output format", []string{"node", "ls", "-o", "xml"}},
	} {
		e.fails(tc.want, tc.args...)
	}
	// Nothing of the failed commands reached the file.
	if got := e.ok("node", "ls", "-o", "json"); strings.Count(got, `"name"`) != 1 {
		t.Errorf("failed commands changed cluster.yaml:\n%s", got)
	}
}

func TestRoleSet(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	for _, tc := range []struct{ role, want string }{
		{"web", "pi3: role none → web\n"},
		{"web", "pi3: role web (unchanged)\n"},
		{"db", "pi3: role web → db\n"},
		{"none", "pi3: role db → none\n"},
	} {
		if got := e.ok("role", "set", "pi3", tc.role); got != tc.want {
			t.Errorf("role set pi3 %s printed %q, want %q", tc.role, got, tc.want)
		}
	}
	e.fails(`unknown role "cache"`, "role", "set", "pi3", "cache")
	e.fails("no node named pi9", "role", "set", "pi9", "web")
	e.fails("expected NODE ROLE", "role", "set", "pi3")

	e.ok("role", "set", "pi3", "web")
	ls := e.ok("role", "ls")
	for _, w := range []string{"web", "db", "lb", "router", "built-in"} {
		if !strings.Contains(ls, w) {
			t.Errorf("role ls lacks %q:\n%s", w, ls)
		}
	}
	if !strings.Contains(e.ok("role", "show", "web"), "pi3") {
		t.Error("role show web does not list pi3")
	}
	e.fails("unknown role", "role", "show", "cache")
}

func TestCommentsSurviveCLIEdits(t *testing.T) {
	e := newEnv(t)
	e.init()
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("# my own note at the end\n")
	f.Close()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	e.ok("role", "set", "pi3", "web")
	data, _ := os.ReadFile(e.config)
	if !strings.Contains(string(data), "# my own note at the end") {
		t.Errorf("comment lost:\n%s", data)
	}
}

func TestInvalidFileIsReportedWithPosition(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c3")
	data, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.Replace(string(data), "mac: dc:a6:32:01:36:c3", "mac: dc:a6:32:01:36:c3, colour: red", 1)), 0o644)
	_, err := e.run("role", "set", "pi3", "web")
	if err == nil || !strings.Contains(err.Error(), "cluster.yaml:") || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("want a file:line:column error naming the unknown key, got %v", err)
	}
}

func TestCompletion(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	if got := e.ok("completion", "bash"); !strings.Contains(got, "complete -o bashdefault") {
		t.Errorf("bash completion script: %q", got)
	}
	if got := e.ok("role", "set", "--generate-bash-completion"); got != "pi3\n" {
		t.Errorf("role set completion: %q", got)
	}
}

// TestMain lets the test binary stand in for pictl: tests that need a real
// process (serve inside a network namespace) re-execute it.
func TestMain(m *testing.M) {
	if os.Getenv("PICTL_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startServe runs `pictl serve` as a process inside a fresh network
// namespace with the boot network's bridge, as on a controller host.
func (e *cliEnv) startServe() *testnet.SafeBuffer {
	e.t.Helper()
	_, log := e.startServeNS()
	return log
}

// startServeNS is startServe that also returns the namespace, to reach
// the controller's TCP ports from inside it.
func (e *cliEnv) startServeNS() (*testnet.NS, *testnet.SafeBuffer) {
	e.t.Helper()
	ns := testnet.New(e.t, "serve")
	ns.Bridge("br0", "10.99.0.1/24")
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), "env", "PICTL_TEST_AS_MAIN=1", self,
		"--config", e.config, "--socket", e.socket, "serve", "--log-level", "info")
	log := &testnet.SafeBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			e.t.Errorf("serve exited with %v after SIGTERM; log:\n%s", err, log)
		}
	})
	return ns, log
}

// serve follows cluster.yaml: edits (by the CLI or by hand) show up through
// the API, and an invalid edit keeps the last good state.
func TestServeReloadsOnChange(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	log := e.startServe()
	ctx := context.Background()

	client := api.NewClient(e.socket)
	var st api.Status
	waitFor(t, "the controller's API", func() bool {
		var err error
		st, err = client.Status(ctx)
		return err == nil
	}, log)
	if st.Nodes != 1 {
		t.Fatalf("status at start: %+v", st)
	}
	gen := st.Generation
	for _, c := range st.Components {
		if c.State != "running" {
			t.Errorf("component %s is %s %s", c.Name, c.State, c.Error)
		}
	}
	// With a controller running, node ls shows runtime columns from the API.
	var rows []api.Node
	json.Unmarshal([]byte(e.ok("node", "ls", "-o", "json")), &rows)
	if len(rows) != 1 || rows[0].Runtime == nil {
		t.Fatalf("node ls through the API: %+v", rows)
	}

	e.ok("node", "add", "pi4", "--mac", "dc:a6:32:01:36:c4")
	waitFor(t, "the reload after node add", func() bool {
		st, _ = client.Status(ctx)
		return st.Generation > gen && st.Nodes == 2
	}, log)

	good, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, append(good, []byte("bogus_key: 1\n")...), 0o644)
	waitFor(t, "the rejection of an invalid file", func() bool {
		st, _ = client.Status(ctx)
		return st.ReloadError != ""
	}, log)
	if !strings.Contains(st.ReloadError, "bogus_key") || st.Nodes != 2 {
		t.Errorf("after an invalid edit: %+v", st)
	}
	os.WriteFile(e.config, good, 0o644)
	waitFor(t, "recovery after the file is fixed", func() bool {
		st, _ = client.Status(ctx)
		return st.ReloadError == "" && st.Nodes == 2
	}, log)
}

func waitFor(t *testing.T, what string, cond func() bool, log fmt.Stringer) {
	t.Helper()
	// Generous: the store promises a reload within a second; a loaded CI
	// machine may take longer, and this is a deadline, not a measurement.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; controller log:\n%s", what, log)
}
