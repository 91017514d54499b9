package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/test/vm"
)

// Shared by every test of the package run: the pictl binary and the
// busybox image directory, built once (lazily, so runs that skip everything
// build nothing).
var (
	shareMu  sync.Mutex
	shareDir string

	buildOnce sync.Once
	pictlBin  string
	buildErr  error

	busyboxOnce sync.Once
	busyboxSrc  string
	busyboxErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shareDir != "" {
		os.RemoveAll(shareDir)
	}
	os.Exit(code)
}

func sharedDir(t testing.TB) string {
	t.Helper()
	shareMu.Lock()
	defer shareMu.Unlock()
	if shareDir == "" {
		d, err := os.MkdirTemp("", "pictl-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		shareDir = d
	}
	return shareDir
}

func pictlBinary(t testing.TB) string {
	t.Helper()
	dir := sharedDir(t)
	buildOnce.Do(func() {
		t0 := time.Now()
		pictlBin, buildErr = BuildPictl(context.Background(), dir)
		t.Logf("e2e: go build ./cmd/pictl: %v", time.Since(t0).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pictlBin
}

// NodeCmdline is what every test node adds to the kernel command line
// pictl renders into boot.ipxe: the console the harness reads, and
// panic=-1 so that a dying init ends QEMU at once (-no-reboot).
const NodeCmdline = "console=ttyS0 panic=-1 quiet"

// checksFlag on a node's command line makes the busybox image's init run
// the recipe's standard filesystem checks (about 4 s more per boot).
const checksFlag = "e2e.checks"

// busyboxImage is the shared importable busybox image directory.
func busyboxImage(t testing.TB, a *vm.Artifacts) string {
	t.Helper()
	busyboxOnce.Do(func() {
		dir := filepath.Join(sharedDir(t), "busybox-image")
		busyboxErr = BusyboxImageSource(dir, a, vm.RootfsSpec{
			Hostname: "e2e-busybox",
			Script:   ownLayerScript + conditionalChecks(checksFlag, vm.StandardChecks()),
		})
		busyboxSrc = dir
	})
	if busyboxErr != nil {
		t.Fatalf("busybox image: %v", busyboxErr)
	}
	return busyboxSrc
}

// ownLayerScript appends the node's export to /root/e2e-boots, a file
// that lives in the node's own (persistent, private) layer on pictl's NFS
// server, and reports how many boots it recorded and how many lines came
// from other exports (must be 0: layers are private).
const ownLayerScript = `echo "$PXE_NFS_EXPORT" >> /root/e2e-boots
st own-layer "boots=$(wc -l < /root/e2e-boots) others=$(grep -cvx "$PXE_NFS_EXPORT" /root/e2e-boots)"
`

// ownLayer returns the own-layer stage's counts.
func ownLayer(t *testing.T, r *vm.Result) (boots, others string) {
	t.Helper()
	d := stageDetail(t, r, "own-layer")
	return field(d, "boots"), field(d, "others")
}

// conditionalChecks renders checks for the init's chk/soft functions, run
// only when flag is on the kernel command line.
func conditionalChecks(flag string, checks []vm.Check) string {
	var b strings.Builder
	fmt.Fprintf(&b, "if grep -qw %s /proc/cmdline; then\n", flag)
	for _, c := range checks {
		fn := "chk"
		if c.Soft {
			fn = "soft"
		}
		fmt.Fprintf(&b, "  %s %s '%s'\n", fn, c.Name, strings.ReplaceAll(c.Script, "'", `'\''`))
	}
	b.WriteString("fi\n")
	return b.String()
}

// lab is one test's world: a namespace with br0 = 10.99.0.1/24, a pictl
// installation (cluster.yaml, state dir, socket) in a temp dir, and the
// guests it boots.
type lab struct {
	t   *testing.T
	ctx context.Context
	net *vm.Net
	art *vm.Artifacts
	ctl *Controller
}

// newLab writes cluster.yaml with `pictl init` for br0 in dhcpMode. IPv6 is
// enabled on br0 (as on any controller host), so pictl's router
// advertisement responder can answer iPXE's solicitations.
func newLab(t *testing.T, tag, dhcpMode string) *lab {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: QEMU boots are not short (-short)")
	}
	n := vm.NewNet(t, tag)
	n.NS.MustExec("sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0", "net.ipv6.conf.br0.disable_ipv6=0")
	a := vm.PrepareT(t)
	bin := pictlBinary(t)
	dir := t.TempDir()
	if os.Getenv("PICTL_E2E_KEEP") != "" {
		var err error
		if dir, err = os.MkdirTemp("", "pictl-e2e-"+tag+"-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("e2e: keeping %s", dir)
	}
	ctl, err := NewController(bin, dir, n.NS.Name)
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, ctx: t.Context(), net: n, art: a, ctl: ctl}
	t.Cleanup(func() {
		took, graceful := ctl.Stop()
		if !graceful {
			t.Errorf("pictl serve did not stop within 10 s of SIGTERM (killed)")
		}
		t.Logf("e2e: pictl serve stopped in %v", took.Round(time.Millisecond))
		if t.Failed() {
			t.Logf("--- controller log tail (%s):\n%s", ctl.LogPath, ctl.LogTail(80))
		}
	})
	if err := ctl.Init(l.ctx, "br0", n.Addr.String(), dhcpMode); err != nil {
		t.Fatal(err)
	}
	return l
}

// pictl runs a CLI command and fails the test on error.
func (l *lab) pictl(args ...string) string {
	l.t.Helper()
	out, err := l.ctl.Run(l.ctx, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// importBusybox imports the shared busybox image as name.
func (l *lab) importBusybox(name string) {
	l.t.Helper()
	src := busyboxImage(l.t, l.art)
	t0 := time.Now()
	out := l.pictl("image", "import", name, src)
	l.t.Logf("e2e: pictl image import %s (%v): %s", name, time.Since(t0).Round(time.Millisecond), strings.TrimSpace(out))
}

func (l *lab) serve() {
	l.t.Helper()
	t0 := time.Now()
	if err := l.ctl.Serve(l.ctx); err != nil {
		l.t.Fatal(err)
	}
	l.t.Logf("e2e: pictl serve answers after %v", time.Since(t0).Round(time.Millisecond))
}

// start powers on a PXE guest with the given MAC on a new tap.
func (l *lab) start(name, mac string, timeout time.Duration) *vm.Guest {
	l.t.Helper()
	return l.net.Start(l.t, vm.Machine{Name: name, MAC: mac, Mode: vm.PXEBoot, Timeout: timeout})
}

// boot powers on a PXE guest and requires it to reach final (a stage
// name, or "NETBOOT-OK") with no failed check and a clean QEMU exit. On
// failure it prints the summary and the console tail (the controller log
// tail follows from the lab's cleanup); on success it logs the phase table.
func (l *lab) boot(name, mac, final string, timeout time.Duration) *vm.Result {
	l.t.Helper()
	return l.bootAll(final, timeout, name, mac)[0]
}

// bootAll powers on several PXE guests at once (name, mac pairs) and
// requires each to pass, as boot does.
func (l *lab) bootAll(final string, timeout time.Duration, nameMACs ...string) []*vm.Result {
	l.t.Helper()
	qemuStart := time.Now()
	var guests []*vm.Guest
	for i := 0; i+1 < len(nameMACs); i += 2 {
		guests = append(guests, l.start(nameMACs[i], nameMACs[i+1], timeout))
	}
	var results []*vm.Result
	for i, g := range guests {
		r := g.Wait()
		if !r.Passed() {
			l.t.Fatalf("guest %s did not boot:\n%s\n--- console tail (%s):\n%s--- qemu stderr:\n%s",
				r.Name, r.Summary(), r.Name, r.Tail(80), r.Stderr)
		}
		tftpDone := TransferDone(l.ctl.Log(), "initrd.img", nameMACs[2*i+1], qemuStart)
		l.t.Log(PhaseTable(fmt.Sprintf("PXE boot of %s (seconds since QEMU start):", r.Name), PXEPhases(r, final, tftpDone), r.Elapsed))
		results = append(results, r)
	}
	return results
}

// waitFor polls cond every 200 ms until it returns true or d passes.
func (l *lab) waitFor(what string, d time.Duration, cond func() (bool, error)) {
	l.t.Helper()
	deadline := time.Now().Add(d)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	l.t.Fatalf("timed out after %v waiting for %s (last error: %v)\n--- controller log tail:\n%s", d, what, lastErr, l.ctl.LogTail(40))
}

// nodes is `pictl node ls -o json`.
func (l *lab) nodes() []api.Node {
	l.t.Helper()
	var rows []api.Node
	if err := json.Unmarshal([]byte(l.pictl("node", "ls", "-o", "json")), &rows); err != nil {
		l.t.Fatalf("pictl node ls -o json: %v", err)
	}
	return rows
}

// discovered is `pictl node ls --discovered -o json`.
func (l *lab) discovered() []api.Discovered {
	l.t.Helper()
	var rows []api.Discovered
	if err := json.Unmarshal([]byte(l.pictl("node", "ls", "--discovered", "-o", "json")), &rows); err != nil {
		l.t.Fatalf("pictl node ls --discovered -o json: %v", err)
	}
	return rows
}

// waitForNode waits until the running controller has loaded node name
// from cluster.yaml (the CLI edits the file; the controller reloads it).
func (l *lab) waitForNode(name string) {
	l.t.Helper()
	l.waitFor("controller to load node "+name, 15*time.Second, func() (bool, error) {
		ns, err := l.ctl.API().Nodes(l.ctx)
		if err != nil {
			return false, err
		}
		for _, n := range ns {
			if n.Name == name {
				return true, nil
			}
		}
		return false, nil
	})
}

// metrics fetches GET /metrics from the API socket.
func (l *lab) metrics() string {
	l.t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", l.ctl.Socket)
		},
	}}
	resp, err := c.Get("http://pictl/metrics")
	if err != nil {
		l.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		l.t.Fatalf("GET /metrics: %s %v\n%s", resp.Status, err, b)
	}
	return string(b)
}

// stageDetail returns a stage's detail or fails.
func stageDetail(t *testing.T, r *vm.Result, name string) string {
	t.Helper()
	s, ok := r.Stage(name)
	if !ok {
		t.Fatalf("guest %s printed no PXE-STAGE %s:\n%s", r.Name, name, r.Tail(40))
	}
	return s.Detail
}

// field returns key=value's value from a stage detail.
func field(detail, key string) string {
	for _, f := range strings.Fields(detail) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}
