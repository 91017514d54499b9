// Command demo is `make demo`: it shows pictl netbooting two web nodes on
// this computer behind its built-in balancer, with nothing to read first.
//
// It prepares the artefacts (Debian's kernel and the harness's initramfs,
// cached in .cache/vm after the first run) and a Debian (systemd) image with
// nginx-light installed through `pictl image exec` (cached in .cache/demo
// after the first run), creates a private network namespace (pictl-demo,
// bridge br0 = 10.99.0.1/24, one tap per machine), writes the embedded demo
// cluster.yaml (two nodes with the web role, the shared www volume),
// imports the image with `pictl image import`, starts `pictl serve` in the
// namespace and powers on two QEMU machines that boot through the real PXE
// path: iPXE → pictl's DHCP → boot.ipxe, kernel and initrd over pictl's
// TFTP → root filesystem over pictl's NFS → systemd reaches the web role's
// target, the agent reports it active, and the balancer takes the node in.
// It then fetches the page through the balancer from the namespace, prints
// `pictl node ls`, `pictl lb status` and where a browser reaches the page
// and the status page, and cleans everything up (machines, pictl, the
// namespace, the work directory) on Ctrl-C — or at once with -exit, or when
// standard input is not a terminal.
//
//	go run ./test/demo [-pictl bin/pictl] [-exit] [-keep]
//
// It needs root (namespaces, taps) and the packages of `make deps`.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pictl/pictl/test/e2e"
	"github.com/pictl/pictl/test/vm"
)

//go:embed cluster.yaml
var clusterTemplate string

// The demo's fixed names: a fixed namespace name (and work directory) lets
// a later run remove what a killed run left behind.
const (
	netnsName  = "pictl-demo"
	hostAddr   = "10.99.0.1/24"
	imageName  = "debian"
	bootBudget = 12 * time.Minute // two Debian guests under TCG on a shared machine
	webBudget  = 5 * time.Minute  // from both up to both web members up
)

// machine is one demo node: its name and MAC must match cluster.yaml.
type machine struct{ name, mac, ip string }

var machines = []machine{
	{"node1", "52:54:00:de:00:01", "10.99.0.11"},
	{"node2", "52:54:00:de:00:02", "10.99.0.12"},
}

func main() {
	pictlBin := flag.String("pictl", "", "pictl binary (default: build ./cmd/pictl into the work directory)")
	exitNow := flag.Bool("exit", false, "clean up and exit as soon as both machines are up (default when stdin is not a terminal)")
	keep := flag.Bool("keep", false, "keep the work directory (cluster.yaml, state, logs, consoles)")
	flag.Parse()
	if !*exitNow && !isTerminal(os.Stdin) {
		*exitNow = true
	}
	// A closed output (`make demo | head`) must not kill the demo before
	// it cleaned up: writes then fail quietly instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// Signals stay caught until cleanup is over: a second Ctrl-C must not
	// kill the demo half-way through removing what it made.
	err := demo(ctx, *pictlBin, *exitNow, *keep)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func demo(ctx context.Context, pictlBin string, exitNow, keep bool) (err error) {
	if err := preflight(); err != nil {
		return err
	}
	say("pictl demo: two QEMU machines netboot Debian from `pictl serve` on a private network,")
	say("take the web role (nginx) and serve a page through pictl's built-in balancer.")
	say("Nothing leaves this computer: everything runs in the network namespace %q.\n", netnsName)
	if netnsExists(netnsName) {
		say("Removing what an earlier demo left behind (namespace %s and its processes).", netnsName)
		if err := removeNetwork(netnsName); err != nil {
			return err
		}
	}

	// --- 1. artefacts
	t0 := time.Now()
	say("[1/7] Preparing Debian's kernel and an initramfs (cached in .cache/vm; the first run downloads ~70 MB)...")
	art, err := prepare(ctx)
	if err != nil {
		return err
	}
	say("      kernel %s, ready in %v", art.KernelRelease, time.Since(t0).Round(100*time.Millisecond))

	// A fixed work directory, like the namespace: a run that was killed is
	// cleaned up by the next one.
	work := filepath.Join(os.TempDir(), "pictl-demo")
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer func() {
		if keep {
			say("Kept the work directory %s", work)
			return
		}
		os.RemoveAll(work)
	}()
	if pictlBin == "" {
		say("      building pictl (go build ./cmd/pictl)...")
		if pictlBin, err = e2e.BuildPictl(ctx, work); err != nil {
			return err
		}
	}
	if pictlBin, err = filepath.Abs(pictlBin); err != nil {
		return err
	}
	// --- 2. network
	say("[2/7] Private network: namespace %s, bridge br0 %s, taps for %d machines", netnsName, hostAddr, len(machines))
	nw, err := createNetwork(netnsName, hostAddr, len(machines))
	defer func() {
		if rerr := removeNetwork(netnsName); rerr != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %v\n", rerr)
		} else {
			say("Cleaned up: machines stopped, pictl stopped, namespace %s removed.", netnsName)
		}
	}()
	if err != nil {
		return err
	}

	// --- 3. cluster.yaml and the image
	ctl, err := e2e.NewController(pictlBin, work, netnsName)
	if err != nil {
		return err
	}
	if err := writeCluster(ctl); err != nil {
		return err
	}
	if err := writeWWW(ctl); err != nil {
		return err
	}
	say("[3/7] Wrote the demo cluster (two nodes, role web; the shared www volume's page) to %s", ctl.Config)
	if err := importWebImage(ctx, ctl, art, work); err != nil {
		return err
	}
	say("      (the demo's initramfs has its own /init, which mounts the NFS root pictl names on the kernel command line)")

	// --- 4. pictl serve
	if err := ctl.Serve(ctx); err != nil {
		return err
	}
	defer func() {
		took, graceful := ctl.Stop()
		if !graceful {
			fmt.Fprintf(os.Stderr, "cleanup: pictl serve ignored SIGTERM for 10 s and was killed\n")
		} else {
			say("pictl serve stopped in %v", took.Round(time.Millisecond))
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "--- pictl serve log tail (%s):\n%s", ctl.LogPath, ctl.LogTail(40))
		}
	}()
	say("[4/7] pictl serve runs in the namespace (PID %d, log %s): DHCP, TFTP, NFS, API, balancer", ctl.PID(), ctl.LogPath)
	say("      $ pictl node ls\n%s", indent(mustRun(ctx, ctl, "node", "ls"), "      "))

	// --- 5. machines
	say("[5/7] Powering on %s and %s: iPXE → DHCP → boot.ipxe, kernel, initrd over TFTP → NFS root → systemd", machines[0].name, machines[1].name)
	guests, err := bootMachines(ctx, nw, work)
	defer func() {
		for _, g := range guests {
			g.Kill()
		}
	}()
	if err != nil {
		return err
	}

	// --- 6. the web role and the balancer
	say("[6/7] systemd reaches the web role's target (nginx on :8000); each node's agent reports it active,")
	say("      and the balancer takes the node in once the role's health check (GET / on :8000) passes")
	if err := waitWeb(ctx, ctl, webBudget); err != nil {
		say("$ pictl node ls\n%s", indent(mustRun(ctx, ctl, "node", "ls"), "  "))
		return err
	}
	lb, err := showBalancer(ctx, ctl)
	if err != nil {
		return err
	}
	defer lb.Close()

	// --- 7. what to look at
	say("\n[7/7] Both machines are up, their roots served by pictl over NFS, nginx behind pictl's balancer.\n")
	say("$ pictl node ls\n%s", indent(mustRun(ctx, ctl, "node", "ls"), "  "))
	say("$ curl --unix-socket %s http://pictl/v1/status\n%s", ctl.Socket, indent(status(ctx, ctl.Socket), "  "))
	say("$ curl --unix-socket %s http://pictl/metrics | grep -E 'pictl_(dhcpd_requests|tftp_sent_bytes|nfsd_mounts)_total'\n%s",
		ctl.Socket, indent(metrics(ctx, ctl.Socket), "  "))
	page, err := showPage(ctx, ctl)
	if err != nil {
		return err
	}
	defer page.Close()
	if exitNow {
		if keep {
			say("Consoles: %s/node*.console.log   Controller log: %s", work, ctl.LogPath)
		}
		return nil
	}
	say("Consoles: %s/node*.console.log   Controller log: %s", work, ctl.LogPath)
	say("\nTry it in another terminal (as root):")
	say("  export PICTL_CONFIG=%s", ctl.Config)
	say("  %s node ls                  # addresses, boot stages, last seen", pictlBin)
	say("  %s node show node1", pictlBin)
	say("  %s node set node2 --netboot=false   # pictl reloads cluster.yaml within a second", pictlBin)
	say("  curl --unix-socket %s http://pictl/metrics", ctl.Socket)
	say("  %s lb status                 # members, in flight, requests, errors, p50/p99", pictlBin)
	say("  %s role set node2 none       # node2 is drained, then leaves the balancer", pictlBin)
	say("\nThe web page through pictl's balancer, in a browser on this machine:\n  %s", lb.URL())
	say("\nStatus page, in a browser on this machine (refreshes every 5 s):\n  %s?token=%s", page.URL(), page.token)
	say("\nPress Ctrl-C to stop the machines and clean everything up.")
	<-ctx.Done()
	say("\nStopping...")
	return nil
}

// preflight explains what is missing before anything is created.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root (network namespaces, tap devices): run it with sudo")
	}
	var missing []string
	for _, tool := range []string{"qemu-system-x86_64", "ip", "apt-get", "dpkg", "xz", "go", "debootstrap", "curl", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, f := range []string{"/bin/busybox", "/usr/lib/ipxe/qemu/efi-virtio.rom", "/dev/net/tun"} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `make deps` first", strings.Join(missing, ", "))
	}
	return nil
}

// prepare is vm.Prepare; on a machine whose apt lists are empty (fresh
// containers) it runs apt-get update once and tries again.
func prepare(ctx context.Context) (*vm.Artifacts, error) {
	a, err := vm.Prepare(ctx, vm.Options{})
	if err == nil || ctx.Err() != nil {
		return a, err
	}
	if lists, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*"); len(lists) > 0 {
		return nil, err
	}
	say("      apt has no package lists yet: apt-get update")
	if uerr := run("apt-get", "update", "-qq"); uerr != nil {
		return nil, fmt.Errorf("%w (and apt-get update failed: %v)", err, uerr)
	}
	return vm.Prepare(ctx, vm.Options{})
}

func writeCluster(ctl *e2e.Controller) error {
	tmpl, err := template.New("cluster.yaml").Parse(clusterTemplate)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, map[string]string{"StateDir": ctl.StateDir, "Socket": ctl.Socket}); err != nil {
		return err
	}
	return os.WriteFile(ctl.Config, b.Bytes(), 0o644)
}

// bootMachines powers on every machine at once and returns them when all
// have reached their NFS root (or one failed), printing the milestones. The
// caller stops the machines.
func bootMachines(ctx context.Context, nw *network, work string) ([]*vm.Guest, error) {
	start := time.Now()
	var mu sync.Mutex
	up := make(chan string, len(machines))
	failed := make(chan error, len(machines))
	var guests []*vm.Guest
	for i, m := range machines {
		g, err := vm.Start(ctx, vm.Machine{
			Name: m.name, MAC: m.mac, Mode: vm.PXEBoot, Netns: nw.Name, Tap: nw.Taps[i],
			Timeout:    24 * time.Hour, // the demo ends them
			ConsoleLog: filepath.Join(work, m.name+".console.log"),
			OnLine: func(g *vm.Guest, l vm.Line) {
				msg, done, bad := milestone(l.Text)
				if msg == "" {
					return
				}
				mu.Lock()
				fmt.Printf("      %-6s %6.1fs  %s\n", m.name, l.At.Seconds(), msg)
				mu.Unlock()
				// Never block the console reader: one report per machine is enough.
				switch {
				case bad:
					select {
					case failed <- fmt.Errorf("%s: %s (console: %s)", m.name, msg, filepath.Join(work, m.name+".console.log")):
					default:
					}
				case done:
					select {
					case up <- m.name:
					default:
					}
				}
			},
		})
		if err != nil {
			return guests, err
		}
		guests = append(guests, g)
	}
	budget := time.NewTimer(bootBudget)
	defer budget.Stop()
	for n := 0; n < len(machines); {
		select {
		case <-up:
			n++
		case err := <-failed:
			return guests, err
		case <-budget.C:
			return guests, fmt.Errorf("the machines did not come up within %v (consoles in %s)", bootBudget, work)
		case <-ctx.Done():
			say("\nStopping...")
			return guests, ctx.Err()
		}
	}
	say("      both up %.1fs after power-on", time.Since(start).Seconds())
	return guests, nil
}

// milestone picks the console lines worth showing.
func milestone(text string) (msg string, up, failed bool) {
	switch {
	case strings.Contains(text, "PXE-FAIL"):
		return text[strings.Index(text, "PXE-FAIL"):], false, true
	case strings.Contains(text, "Kernel panic"):
		return strings.TrimSpace(text), false, true
	case strings.Contains(text, "NETBOOT-OK"):
		return "up: init runs from the NFS root", true, false
	case strings.Contains(text, "net0: 10.") && strings.Contains(text, "/"):
		return "iPXE: DHCP address " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(text), "net0:")), false, false
	case strings.Contains(text, "boot.ipxe :"):
		return "iPXE: boot.ipxe from pictl's TFTP", false, false
	case strings.Contains(text, "vmlinuz..."):
		return "iPXE: kernel downloaded over TFTP", false, false
	}
	i := strings.Index(text, "PXE-STAGE ")
	if i < 0 {
		return "", false, false
	}
	f := strings.Fields(text[i+len("PXE-STAGE "):])
	if len(f) == 0 {
		return "", false, false
	}
	rest := strings.Join(f[1:], " ")
	if j := strings.Index(rest, "opts="); j >= 0 {
		rest = rest[:j]
	}
	switch f[0] {
	case "initrd-start":
		return "Linux started, initramfs runs", false, false
	case "dhcp-bound", "nfs-mount-start", "nfs-mounted", "hello", "own-layer", "multi-user":
		return strings.TrimSpace(f[0] + " " + dropUptime(rest)), false, false
	}
	return "", false, false
}

func dropUptime(s string) string {
	var keep []string
	for _, f := range strings.Fields(s) {
		if !strings.HasPrefix(f, "uptime=") {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

func mustRun(ctx context.Context, ctl *e2e.Controller, args ...string) string {
	out, err := ctl.Run(ctx, args...)
	if err != nil {
		return err.Error()
	}
	return out
}

func unixGet(ctx context.Context, socket, path string) ([]byte, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pictl"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func status(ctx context.Context, socket string) string {
	b, err := unixGet(ctx, socket, "/v1/status")
	if err != nil {
		return err.Error()
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

func metrics(ctx context.Context, socket string) string {
	b, err := unixGet(ctx, socket, "/metrics")
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, p := range []string{"pictl_dhcpd_requests_total{", "pictl_tftp_sent_bytes_total", "pictl_nfsd_mounts_total"} {
			if strings.HasPrefix(l, p) {
				keep = append(keep, l)
			}
		}
	}
	return strings.Join(keep, "\n")
}

func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// statusPage is the forwarded status page and the token that opens it.
type statusPage struct {
	*pageForwarder
	token string
}

// showPage forwards the status page to this machine's loopback and fetches
// it once with the API token, as a browser would, to show it answers.
func showPage(ctx context.Context, ctl *e2e.Controller) (*statusPage, error) {
	tok := strings.TrimSpace(mustRun(ctx, ctl, "api", "token"))
	fw, err := forwardPage(netnsName, net.JoinHostPort(strings.Split(hostAddr, "/")[0], "8080"))
	if err != nil {
		return nil, err
	}
	p := &statusPage{pageForwarder: fw, token: tok}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fw.URL(), nil)
	if err != nil {
		fw.Close()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		fw.Close()
		return nil, fmt.Errorf("status page: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	nodes := 0
	for _, m := range machines {
		if strings.Contains(string(body), ">"+m.name+"<") {
			nodes++
		}
	}
	say("$ curl -H 'Authorization: Bearer $(pictl api token)' %s   # the status page, forwarded from 10.99.0.1:8080 in the namespace", fw.URL())
	say("  %s, %d bytes of HTML, %d of %d nodes listed", resp.Status, len(body), nodes, len(machines))
	return p, nil
}
