// Command dhcp benchmarks pictl's dhcpd against kea-dhcp4 with perfdhcp, side
// by side in the same network namespaces, and prints a table.
//
// Both servers get the same subnet and pool; perfdhcp (Debian kea-admin)
// runs in a second namespace as a relay (-l), like the reference
// measurement: perfdhcp -4 -r RATE -R CLIENTS -p SECONDS -x t -l CLIENT SERVER.
// For each server it searches the highest rate with ≤ 1 % drops using
// short trials (interleaving the servers so a change of machine load hits
// both), then confirms it with one long trial and reports that trial's rate
// and DISCOVER→OFFER / REQUEST→ACK latency percentiles. Every trial starts
// the server afresh with empty lease storage.
//
// pictl's dhcpd makes every lease it writes durable before its ACK leaves
// (group commit: appended to its lease journal and fdatasync'ed, moved
// into bbolt in the background); kea's memfile appends its CSV without
// fsync.
//
// -tool-rcvbuf BYTES (off by default) gives perfdhcp's own sockets that
// receive buffer (SO_RCVBUFFORCE on a duplicate of its descriptors, taken
// with pidfd_getfd; no sysctl is changed). It applies to perfdhcp in every
// trial, whichever server it measures. On two cores perfdhcp takes most
// of a core and a half, and the drops it counts are mostly its own socket
// overflowing (the "UDP rcvbuf overflows" rows), not the servers'. It is
// off by default because it is not clearly neutral: a server that answers
// in bursts (pictl sends a group commit's ACKs together, with sendmmsg)
// overflows a small buffer sooner than one that answers one by one
// (kea), so a larger buffer helps the burstier server more. Tables made
// with it say so in their header.
//
// On two cores perfdhcp, not the server, sets the ceiling. In its default
// multi-thread mode (a receiver thread) it takes 1.3–1.6 cores and tops
// out near 5,000 leases/s here, whatever the server; single-thread mode
// (-perfdhcp-args "-g single") reaches ~8,000/s on 1.1–1.6 cores, so run.sh's
// as-is table uses it. -pin TOOL:SERVER puts perfdhcp and the
// server on separate CPUs, and -server-cpu F caps the server at F of one
// CPU (cgroup bandwidth control, 10 ms period), the same for every
// server: capped, the servers run out of CPU before perfdhcp does and the
// table compares them, as on a machine where the load generator has
// cores to spare. run.sh with no arguments prints both tables: as is
// (perfdhcp -g single), and pinned with the servers capped at a quarter of
// a CPU, in perfdhcp's default mode: capped with -g single (and
// -tool-rcvbuf), kea 1 thread fell from ~3,700/s to ~2,000/s with its own
// socket overflowing while throttled, which pictl's larger socket buffer
// absorbs, so that table would flatter pictl.
//
// Needs root, iproute2, perfdhcp and kea-dhcp4. Run: test/bench/dhcp/run.sh
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"github.com/pictl/pictl/dhcpd"
)

const (
	serverAddr = "10.70.0.1"
	clientAddr = "10.70.0.2"
	network    = "10.70.0.0/16"
	poolFirst  = "10.70.1.0"
	poolLast   = "10.70.255.254"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(serve(os.Args[2:]))
	}
	var (
		long     = flag.Duration("duration", 30*time.Second, "length of the confirming trial")
		short    = flag.Duration("search-duration", 5*time.Second, "length of a search trial")
		clients  = flag.Int("clients", 50000, "simulated clients (perfdhcp -R)")
		start    = flag.Int("start", 2000, "first rate tried (exchanges/s)")
		maxRate  = flag.Int("max", 40000, "highest rate tried")
		maxDrop  = flag.Float64("max-drop", 1, "drops allowed, percent")
		only     = flag.String("only", "", "run only kea or pictl")
		retries  = flag.Int("retries", 1, "times a failed trial is repeated before the rate counts as failed (the machine is shared: a neighbour's burst should not decide)")
		quiet    = flag.Float64("quiet", 2.5, "before a trial, wait (up to -quiet-wait) until fewer than this many tasks are runnable on average")
		quietMax = flag.Duration("quiet-wait", 2*time.Minute, "longest wait for a quiet machine before a trial")
		workdir  = flag.String("workdir", "", "scratch directory (default: a new temp dir)")
		extra    = flag.String("serve-args", "", "extra flags for pictl's server, space-separated (e.g. \"-linger 2ms\"), for experiments")
		profDir  = flag.String("cpuprofile", "", "write a CPU profile of every pictl trial into this directory (pictl-N.pprof)")
		toolBuf  = flag.Int("tool-rcvbuf", 0, "receive buffer (bytes) forced on perfdhcp's sockets in every trial, for both servers alike; 0 = perfdhcp's default (net.core.rmem_default)")
		keaMT    = flag.String("kea-threads", "2", "kea-dhcp4's thread-pool-size, a comma-separated list for one kea column each; 0 turns its multi-threading off")
		capCPU   = flag.Float64("server-cpu", 0, "cap the server at this fraction of one CPU (cgroup CPU bandwidth), the same for every server, so the server, not perfdhcp, runs out of CPU first; 0 = no cap")
		toolArgs = flag.String("perfdhcp-args", "", "extra perfdhcp flags, space-separated, for both servers alike (e.g. \"-g single\")")
		pin      = flag.String("pin", "", "TOOL_CPUS:SERVER_CPUS: run perfdhcp and the server on separate CPUs (taskset lists, e.g. 0:1), the same for every server")
	)
	flag.Parse()
	pins, err := parsePins(*pin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dhcp bench:", err)
		os.Exit(2)
	}
	var keaThreads []int
	for _, f := range strings.Split(*keaMT, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "dhcp bench: -kea-threads %q: want numbers ≥ 0, e.g. 2,0\n", *keaMT)
			os.Exit(2)
		}
		keaThreads = append(keaThreads, n)
	}
	q := quietness{threshold: *quiet, maxWait: *quietMax}
	if err := run(*long, *short, *clients, *start, *maxRate, *maxDrop, *only, *workdir, *profDir, strings.Fields(*extra), *retries, toolOpts{rcvbuf: *toolBuf, args: strings.Fields(*toolArgs)}, pins, *capCPU, keaThreads, q); err != nil {
		fmt.Fprintln(os.Stderr, "dhcp bench:", err)
		os.Exit(1)
	}
}

func run(long, short time.Duration, clients, start, maxRate int, maxDrop float64, only, workdir, profDir string, extra []string, retries int, tool toolOpts, pins cpuPins, capCPU float64, keaThreads []int, q quietness) error {
	load0 := loadAvg()
	for _, bin := range []string{"ip", "perfdhcp", "kea-dhcp4"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (Debian: iproute2, kea-admin, kea-dhcp4-server)", bin)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	if workdir == "" {
		d, err := os.MkdirTemp("", "pictl-dhcp-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		workdir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nets, err := setupNamespaces()
	if err != nil {
		return err
	}
	defer nets.teardown()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	quota, err := newCPUQuota(capCPU)
	if err != nil {
		return err
	}
	defer quota.remove()
	var servers []server
	if only == "" || only == "kea" {
		for _, n := range keaThreads {
			servers = append(servers, &keaServer{proc: proc{quota: quota}, threads: n, labelled: len(keaThreads) > 1,
				cpus: pins.server, ns: nets.server, dir: filepath.Join(workdir, fmt.Sprintf("kea-%d", n)), iface: "s0"})
		}
	}
	if only == "" || only == "pictl" {
		servers = append(servers, &pictlServer{proc: proc{quota: quota}, cpus: pins.server, ns: nets.server, dir: filepath.Join(workdir, "pictl"), exe: self, profDir: profDir, extra: extra})
	}
	if only == "" || only == "pictl-noreuse" {
		servers = append(servers, &pictlServer{proc: proc{quota: quota}, cpus: pins.server, ns: nets.server, dir: filepath.Join(workdir, "pictl-noreuse"), exe: self, noReuse: true, profDir: profDir, extra: extra})
	}
	if len(servers) == 0 {
		return fmt.Errorf("-only %q: want kea, pictl or pictl-noreuse", only)
	}
	searches := make([]*search, len(servers))
	for i, s := range servers {
		searches[i] = &search{srv: s, rate: start, max: maxRate, maxDrop: maxDrop}
	}
	trialFor := func(s server, rate int, d time.Duration) (trial, error) {
		runnable := q.wait(ctx)
		if err := s.start(ctx); err != nil {
			return trial{}, err
		}
		cpu0 := s.cpu()
		sOver0, cOver0 := udpRcvbufErrors(nets.server), udpRcvbufErrors(nets.client)
		t, err := runPerfdhcp(ctx, pins.tool, nets.client, clientAddr, serverAddr, rate, clients, d, tool)
		cpu := s.cpu() - cpu0
		sOver, cOver := udpRcvbufErrors(nets.server)-sOver0, udpRcvbufErrors(nets.client)-cOver0
		if serr := s.stop(); err == nil {
			err = serr
		}
		// Socket buffer overflows say who fell behind: the server (its
		// reads) or perfdhcp (its own reads, on a busy machine).
		fmt.Fprintf(os.Stderr, "  %-11s %6d/s for %-4s → %6.0f/s, drops %5.2f %%, DO p95 %7.2f ms, RA p95 %7.2f ms, CPU server %4.1f s perfdhcp %4.1f s, rcvbuf overflows server %d perfdhcp %d (runnable before: %.1f)\n",
			s.name(), rate, d, t.rate, t.dropRatio(), percentile(t.doLat, .95), percentile(t.raLat, .95), cpu.Seconds(), t.toolCPU.Seconds(), sOver, cOver, runnable)
		t.cpu, t.serverOverflows, t.toolOverflows = cpu, sOver, cOver
		if t.toolBuffers != "" {
			fmt.Fprintf(os.Stderr, "    perfdhcp's receive buffers (-tool-rcvbuf): %s\n", t.toolBuffers)
		}
		return t, err
	}
	fmt.Fprintf(os.Stderr, "searching the highest rate with ≤ %.1f %% drops (%s trials, %d clients, pool %s-%s)\n", maxDrop, short, clients, poolFirst, poolLast)
	for {
		pending := false
		for _, s := range searches {
			if s.done {
				continue
			}
			pending = true
			var t trial
			for attempt := 0; attempt <= retries; attempt++ {
				var err error
				if t, err = trialFor(s.srv, s.rate, short); err != nil {
					return err
				}
				if t.ok(maxDrop) {
					break
				}
			}
			s.record(t)
		}
		if !pending {
			break
		}
	}
	fmt.Fprintf(os.Stderr, "confirming with %s trials\n", long)
	// Interleaved like the search: each round gives every unconfirmed
	// server one trial; a failure is retried, then the rate drops 10 %.
	results := make([]trial, len(searches))
	type confirmation struct {
		rate, step, attempt int
		done                bool
	}
	conf := make([]confirmation, len(searches))
	for i, s := range searches {
		conf[i].rate = s.best
	}
	for {
		pending := false
		for i, s := range searches {
			c := &conf[i]
			if c.done {
				continue
			}
			pending = true
			t, err := trialFor(s.srv, c.rate, long)
			if err != nil {
				return err
			}
			results[i] = t
			switch {
			case t.ok(maxDrop):
				c.done = true
			case c.attempt < retries:
				c.attempt++
			case c.step == confirmSteps || c.rate*9/10 < 100:
				c.done = true
			default:
				c.step, c.attempt, c.rate = c.step+1, 0, c.rate*9/10
			}
		}
		if !pending {
			break
		}
	}
	printTable(os.Stdout, servers, results, clients, long, maxDrop, tool, pins, quota)
	fmt.Fprintf(os.Stdout, "  machine: %d CPUs, load average %s at start, %s at end (other jobs share the machine)\n", runtime.NumCPU(), load0, loadAvg())
	return nil
}

// confirmSteps: a rate whose long trials fail (after retries) drops by
// 10 % at most this many times before the last trial stands, starred.
const confirmSteps = 3

// search finds the highest passing rate: ×1.5 until a trial fails, then
// bisection until the bounds are within 10 %.
type search struct {
	srv      server
	rate     int
	max      int
	maxDrop  float64
	best     int // highest passing rate so far
	failedAt int // lowest failing rate so far, 0 = none
	done     bool
}

func (s *search) record(t trial) {
	if t.ok(s.maxDrop) {
		s.best = max(s.best, t.target)
	} else if s.failedAt == 0 || t.target < s.failedAt {
		s.failedAt = t.target
	}
	switch {
	case s.failedAt == 0 && s.rate >= s.max:
		s.done = true
	case s.failedAt == 0:
		s.rate = min(s.max, s.rate*3/2)
	case s.best == 0:
		if s.failedAt <= 100 {
			s.best, s.done = 100, true
			return
		}
		s.rate = s.failedAt / 2
	case float64(s.failedAt)/float64(s.best) <= 1.1:
		s.done = true
	default:
		s.rate = (s.best + s.failedAt) / 2
	}
}

func printTable(w io.Writer, servers []server, results []trial, clients int, d time.Duration, maxDrop float64, tool toolOpts, pins cpuPins, quota *cpuQuota) {
	fmt.Fprintf(w, "\nDHCPv4 under perfdhcp (relayed, %d clients, pool %s-%s, %s trial, ≤ %.0f %% drops, %s, %s, %s)\n", clients, poolFirst, poolLast, d, maxDrop, tool, pins, quota)
	type row struct {
		label string
		f     func(trial) float64
		fmt   string
	}
	rows := []row{
		{"sustained leases/s (4-way exchanges)", func(t trial) float64 { return t.rate }, "%.0f"},
		{"drops (%)", func(t trial) float64 { return t.dropRatio() }, "%.2f"},
		{"DISCOVER→OFFER p50 (ms)", func(t trial) float64 { return percentile(t.doLat, .5) }, "%.2f"},
		{"DISCOVER→OFFER p95 (ms)", func(t trial) float64 { return percentile(t.doLat, .95) }, "%.2f"},
		{"REQUEST→ACK p50 (ms)", func(t trial) float64 { return percentile(t.raLat, .5) }, "%.2f"},
		{"REQUEST→ACK p95 (ms)", func(t trial) float64 { return percentile(t.raLat, .95) }, "%.2f"},
		{"server CPU per 1000 leases (ms)", func(t trial) float64 {
			n := t.rate * t.duration.Seconds()
			if n == 0 {
				return 0
			}
			return t.cpu.Seconds() * 1000 / n * 1000
		}, "%.1f"},
		// Where the drops happen: perfdhcp polls, so on two CPUs it and
		// the server compete, and its own socket overflows first.
		{"perfdhcp CPU (cores)", func(t trial) float64 { return t.toolCPU.Seconds() / t.duration.Seconds() }, "%.2f"},
		{"UDP rcvbuf overflows, server socket", func(t trial) float64 { return float64(t.serverOverflows) }, "%.0f"},
		{"UDP rcvbuf overflows, perfdhcp socket", func(t trial) float64 { return float64(t.toolOverflows) }, "%.0f"},
	}
	// Ratios are against kea's best column: the most leases/s.
	kea := -1
	for i, s := range servers {
		if _, ok := s.(*keaServer); ok && (kea < 0 || results[i].rate > results[kea].rate) {
			kea = i
		}
	}
	fmt.Fprintf(w, "%-38s", "")
	for _, s := range servers {
		fmt.Fprintf(w, " %18s", s.name())
	}
	for _, s := range servers {
		if _, isKea := s.(*keaServer); kea >= 0 && !isKea {
			fmt.Fprintf(w, " %18s", "ratio "+strings.TrimPrefix(s.name(), "pictl ")+"/kea")
		}
	}
	fmt.Fprintln(w)
	unconfirmed := false
	for ri, r := range rows {
		fmt.Fprintf(w, "%-38s", r.label)
		var vals []float64
		for _, t := range results {
			v := r.f(t)
			vals = append(vals, v)
			cell := fmt.Sprintf(r.fmt, v)
			if ri == 0 && !t.ok(maxDrop) {
				cell += "*"
				unconfirmed = true
			}
			fmt.Fprintf(w, " %18s", cell)
		}
		for i := range vals {
			if _, isKea := servers[i].(*keaServer); kea >= 0 && !isKea {
				if vals[kea] != 0 {
					fmt.Fprintf(w, " %18.2f", vals[i]/vals[kea])
				} else {
					fmt.Fprintf(w, " %18s", "-")
				}
			}
		}
		fmt.Fprintln(w)
	}
	if unconfirmed {
		fmt.Fprintf(w, "  *: not sustained: no long trial, down to ~%.0f %% of the rate the search found, kept drops ≤ %.0f %%; the last one is shown\n", 100*math.Pow(0.9, confirmSteps), maxDrop)
	}
	for _, s := range servers {
		fmt.Fprintf(w, "  %s: %s\n", s.name(), s.describe())
	}
	fmt.Fprintln(w, "  ratio: pictl/"+servers[max(kea, 0)].name()+", kea's best column (above 1 is better for leases/s, below 1 is better for latency, drops and CPU)")
}

// udpRcvbufErrors is the UDP receive-buffer overflow count of namespace
// ns (/proc/net/snmp), -1 when unreadable.
func udpRcvbufErrors(ns string) int {
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").Output()
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	return -1
}

// namespaces are the server and client namespaces joined by a veth pair.
type namespaces struct{ server, client string }

func setupNamespaces() (*namespaces, error) {
	tag := rand.Uint32()
	n := &namespaces{server: fmt.Sprintf("pb-dhcp-s-%08x", tag), client: fmt.Sprintf("pb-dhcp-c-%08x", tag)}
	cmds := [][]string{
		{"netns", "add", n.server},
		{"netns", "add", n.client},
		{"-n", n.server, "link", "set", "lo", "up"},
		{"-n", n.client, "link", "set", "lo", "up"},
		{"-n", n.server, "link", "add", "s0", "type", "veth", "peer", "name", "c0", "netns", n.client},
		{"-n", n.server, "addr", "add", serverAddr + "/16", "dev", "s0"},
		{"-n", n.client, "addr", "add", clientAddr + "/16", "dev", "c0"},
		{"-n", n.server, "link", "set", "s0", "up"},
		{"-n", n.client, "link", "set", "c0", "up"},
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			n.teardown()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	time.Sleep(time.Second) // veth carrier
	return n, nil
}

func (n *namespaces) teardown() {
	exec.Command("ip", "netns", "del", n.server).Run()
	exec.Command("ip", "netns", "del", n.client).Run()
}

// server is a DHCP server under test, run as a process in the server
// namespace (`ip netns exec` execs it, so the PID is the server's).
type server interface {
	name() string
	describe() string
	start(ctx context.Context) error
	stop() error
	cpu() time.Duration
}

type proc struct {
	cmd   *exec.Cmd
	quota *cpuQuota // nil: not capped
}

// started records a server process that has just started and caps it.
func (p *proc) started(cmd *exec.Cmd) error {
	p.cmd = cmd
	if err := p.quota.enter(cmd.Process.Pid); err != nil {
		p.stop()
		return err
	}
	return nil
}

func (p *proc) stop() error {
	if p.cmd == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
	return nil
}

// cpu is the process's user+system time from /proc (clock ticks of 10 ms).
func (p *proc) cpu() time.Duration {
	if p.cmd == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return time.Duration(u+k) * 10 * time.Millisecond
}

type keaServer struct {
	proc
	cpus, ns, dir, iface string
	threads              int  // 0: multi-threading off
	labelled             bool // several kea columns: the name says which
}

func (k *keaServer) name() string {
	switch {
	case !k.labelled:
		return "kea-dhcp4"
	case k.threads == 0:
		return "kea 1 thread"
	}
	return fmt.Sprintf("kea %d threads", k.threads)
}
func (k *keaServer) describe() string {
	mt := "multi-threading off"
	if k.threads > 0 {
		mt = fmt.Sprintf("multi-threading %d threads, queue 64", k.threads)
	}
	return "kea-dhcp4 " + keaVersion() + ", memfile (persist, no fsync), " + mt
}

func (k *keaServer) multiThreading() string {
	if k.threads == 0 {
		return `{"enable-multi-threading": false}`
	}
	return fmt.Sprintf(`{"enable-multi-threading": true, "thread-pool-size": %d, "packet-queue-size": 64}`, k.threads)
}

func keaVersion() string {
	out, err := exec.Command("kea-dhcp4", "-v").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

const keaConfig = `{"Dhcp4": {
  "interfaces-config": {"interfaces": ["%s"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "%s", "lfc-interval": 0},
  "multi-threading": %s,
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "%s", "pools": [{"pool": "%s - %s"}]}],
  "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "stderr"}]}]
}}`

func (k *keaServer) start(ctx context.Context) error {
	os.RemoveAll(k.dir)
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(k.dir, "kea.json")
	cfg := fmt.Sprintf(keaConfig, k.iface, filepath.Join(k.dir, "leases4.csv"), k.multiThreading(), network, poolFirst, poolLast)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return err
	}
	cmd := netnsCmd(context.Background(), k.cpus, k.ns, "kea-dhcp4", "-c", conf)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+k.dir, "KEA_LOCKFILE_DIR=none")
	logf, err := os.Create(filepath.Join(k.dir, "kea.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := k.started(cmd); err != nil {
		return err
	}
	// Kea logs DHCP4_STARTED once its sockets are open.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(k.dir, "kea.log"))
		if strings.Contains(string(b), "DHCP4_STARTED") || strings.Contains(string(b), "DHCP4_MULTI_THREADING_INFO") {
			time.Sleep(300 * time.Millisecond)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(k.dir, "kea.log"))
	return fmt.Errorf("kea-dhcp4 did not start: %s", b)
}

type pictlServer struct {
	proc
	cpus, ns, dir, exe string
	noReuse            bool
	profDir            string // "" = no CPU profiles
	extra              []string
	trials             int
}

func (p *pictlServer) name() string {
	if p.noReuse {
		return "pictl (no reuse)"
	}
	return "pictl dhcpd"
}

func (p *pictlServer) describe() string {
	d := "every written lease durable before its ACK (group commit: lease journal, one fdatasync; moved into the bbolt runtime DB in the background), 1 reader goroutine (recvmmsg), GOMAXPROCS Go's default (the CPUs it may use)"
	if p.noReuse {
		return d + ", LeaseReuse off: every grant written"
	}
	return d + ", default LeaseReuse 0.25: a client's repeat DORA within 15 min gets its stored lease back unwritten (Kea's cache-threshold, off by default in Kea)"
}

func (p *pictlServer) start(ctx context.Context) error {
	os.RemoveAll(p.dir)
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	args := []string{p.exe, "serve", "-db", filepath.Join(p.dir, "runtime.db")}
	if p.noReuse {
		args = append(args, "-reuse", "-1")
	}
	args = append(args, p.extra...)
	if p.profDir != "" {
		p.trials++
		tag := "pictl"
		if p.noReuse {
			tag = "pictl-noreuse"
		}
		f, err := filepath.Abs(filepath.Join(p.profDir, fmt.Sprintf("%s-%d.pprof", tag, p.trials)))
		if err != nil {
			return err
		}
		args = append(args, "-cpuprofile", f)
	}
	cmd := netnsCmd(context.Background(), p.cpus, p.ns, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := p.started(cmd); err != nil {
		return err
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
				io.Copy(io.Discard, out)
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			return errors.New("pictl dhcpd exited before it was ready")
		}
		return nil
	case <-time.After(15 * time.Second):
		return errors.New("pictl dhcpd not ready")
	}
}

// serve runs pictl's dhcpd in full mode on the bench subnet.
func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dbPath := fs.String("db", "runtime.db", "runtime database")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here")
	reuse := fs.Float64("reuse", 0, "dhcpd.Config.LeaseReuse (0 = default, -1 = off)")
	linger := fs.Duration("linger", 0, "dhcpd.Config.CommitLinger (0 = default, -1ns = off)")
	workers := fs.Int("workers", 0, "dhcpd.Config.Workers (0 = default)")
	coalesce := fs.Duration("coalesce", 0, "dhcpd.Config.ReadCoalesce (0 = default, -1ns = off)")
	direct := fs.Bool("direct", false, "dhcpd.Config.DirectCommit: every group commit a bbolt transaction (two fdatasyncs), no lease journal")
	fs.Parse(args)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	db, err := bbolt.Open(*dbPath, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	cfg := dhcpd.Config{
		Mode:         dhcpd.ModeFull,
		SkipProbe:    true,
		LeaseReuse:   *reuse,
		CommitLinger: *linger,
		ReadCoalesce: *coalesce,
		Workers:      *workers,
		DirectCommit: *direct,
		Subnets: []dhcpd.Subnet{{
			Network: netip.MustParsePrefix(network),
			Range:   dhcpd.Range{First: netip.MustParseAddr(poolFirst), Last: netip.MustParseAddr(poolLast)},
			Router:  netip.MustParseAddr(serverAddr),
		}},
	}
	reg := prometheus.NewRegistry()
	s, err := dhcpd.New(cfg, noNodes{}, db, slog.New(slog.DiscardHandler), reg)
	if err == nil {
		err = s.Listen()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("READY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	printCommitStats(reg)
	return 0
}

// printCommitStats writes the group commit's figures to stderr: how many
// commits, how many records each, how long each took.
func printCommitStats(g prometheus.Gatherer) {
	mfs, err := g.Gather()
	if err != nil {
		return
	}
	var commits, records, seconds float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "pictl_dhcpd_reply_latency_seconds":
				h := m.GetHistogram()
				var msg string
				for _, l := range m.GetLabel() {
					msg = l.GetValue()
				}
				line := fmt.Sprintf("    pictl: %s latency in the server (receive to send):", msg)
				for _, b := range h.GetBucket() {
					line += fmt.Sprintf(" ≤%gms %.1f%%", b.GetUpperBound()*1000, 100*float64(b.GetCumulativeCount())/float64(max(1, h.GetSampleCount())))
				}
				fmt.Fprintln(os.Stderr, line)
			case "pictl_dhcpd_commit_batch_records":
				commits, records = float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
			case "pictl_dhcpd_commit_seconds":
				seconds = m.GetHistogram().GetSampleSum()
			}
		}
	}
	if commits > 0 {
		fmt.Fprintf(os.Stderr, "    pictl: %.0f commits, %.1f records each, %.2f ms each\n", commits, records/commits, seconds/commits*1000)
	}
}

type noNodes struct{}

func (noNodes) ByMAC(net.HardwareAddr) (dhcpd.Node, bool) { return dhcpd.Node{}, false }
func (noNodes) ByIP(netip.Addr) (dhcpd.Node, bool)        { return dhcpd.Node{}, false }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// quietness waits for a moment when the shared machine is not busy, so a
// neighbour's burst does not decide a trial.
type quietness struct {
	threshold float64
	maxWait   time.Duration
}

// wait returns the mean number of runnable tasks seen last.
func (q quietness) wait(ctx context.Context) float64 {
	deadline := time.Now().Add(q.maxWait)
	for {
		r := runnableMean(time.Second)
		if r < q.threshold || time.Now().After(deadline) || ctx.Err() != nil {
			return r
		}
		time.Sleep(2 * time.Second)
	}
}

// runnableMean samples /proc/loadavg's running-task count over d.
func runnableMean(d time.Duration) float64 {
	const n = 10
	sum := 0.0
	for range n {
		b, _ := os.ReadFile("/proc/loadavg")
		f := strings.Fields(string(b))
		if len(f) >= 4 {
			cur, _, _ := strings.Cut(f[3], "/")
			v, _ := strconv.Atoi(cur)
			sum += float64(v - 1) // minus this reader
		}
		time.Sleep(d / n)
	}
	return sum / n
}
