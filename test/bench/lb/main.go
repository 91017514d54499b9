// Command lb benchmarks pictl's balancer against nginx and HAProxy on
// loopback and prints a table.
//
// Two nginx backends (one worker each) serve a 1 KiB and a 64 KiB file.
// In front of them, one at a time: nothing (wrk straight at a backend),
// nginx (2 workers, upstream keepalive), HAProxy (2 threads, mode http
// with http-reuse always, and mode tcp), and pictl's balancer in L7 and
// L4 mode (GOMAXPROCS=2, run by this binary's hidden "proxy" subcommand,
// not by the controller). Every proxy adds X-Forwarded-For and balances
// over both backends. wrk -t2 runs at each connection count and size;
// the table gives req/s, wrk's p50/p99 and the proxy's CPU time per
// request: user+system of the proxy's processes from /proc over the
// measured run, divided by wrk's request count. On two shared cores CPU
// per request is the figure that holds; req/s and latency move with
// whatever else the machine runs.
//
// -pin TOOL:PROXY (CPU lists as taskset takes them) puts wrk and the proxy
// on CPUs of their own; the backends share every CPU.
//
// -profile DIR writes pictl's CPU profile of each pictl row there.
//
// Needs nginx, haproxy and wrk (make bench-deps). Run: test/bench/lb/run.sh
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pictl/pictl/internal/balancer"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		os.Exit(proxyMain(os.Args[2:]))
	}
	duration := flag.Duration("duration", 10*time.Second, "measured wrk run per row")
	warmup := flag.Duration("warmup", 2*time.Second, "wrk run before each measured one")
	connsFlag := flag.String("conns", "64,256", "wrk connection counts")
	sizesFlag := flag.String("sizes", "1024,65536", "response sizes in bytes")
	only := flag.String("only", "", "comma-separated proxies to run (direct,nginx,haproxy-http,haproxy-tcp,pictl-http,pictl-tcp)")
	pin := flag.String("pin", "", "TOOL_CPUS:PROXY_CPUS, e.g. 0:1")
	profDir := flag.String("profile", "", "directory for pictl CPU profiles")
	flag.Parse()
	pins, err := parsePins(*pin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var conns, sizes []int
	for _, s := range strings.Split(*connsFlag, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "-conns:", err)
			os.Exit(2)
		}
		conns = append(conns, n)
	}
	for _, s := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "-sizes:", err)
			os.Exit(2)
		}
		sizes = append(sizes, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *duration, *warmup, conns, sizes, *only, pins, *profDir); err != nil {
		fmt.Fprintln(os.Stderr, "lb bench:", err)
		os.Exit(1)
	}
}

// cpuPins splits the machine between wrk and the proxy (as the dhcp
// bench's -pin does).
type cpuPins struct{ tool, proxy string }

func parsePins(s string) (cpuPins, error) {
	if s == "" {
		return cpuPins{}, nil
	}
	tool, proxy, ok := strings.Cut(s, ":")
	if !ok || tool == "" || proxy == "" {
		return cpuPins{}, fmt.Errorf("-pin %q: want TOOL_CPUS:PROXY_CPUS, e.g. 0:1", s)
	}
	return cpuPins{tool: tool, proxy: proxy}, nil
}

func (p cpuPins) String() string {
	if p.tool == "" {
		return "not pinned"
	}
	return fmt.Sprintf("wrk pinned to CPU %s, proxy to CPU %s, backends unpinned", p.tool, p.proxy)
}

func pinned(cpus string, argv ...string) *exec.Cmd {
	if cpus == "" {
		return exec.Command(argv[0], argv[1:]...)
	}
	return exec.Command("taskset", append([]string{"-c", cpus}, argv...)...)
}

type proxyKind struct {
	name  string
	about string
	start func(dir string, port int, backends []string, prof string) (*exec.Cmd, error)
}

type result struct {
	proxy       string
	size, conns int
	reqs        float64 // requests/s
	total       int64
	errors      int64
	p50, p99    time.Duration
	cpuPerReq   time.Duration // 0: not measured (direct)
}

func run(ctx context.Context, d, warmup time.Duration, conns, sizes []int, only string, pins cpuPins, profDir string) error {
	for _, tool := range []string{"nginx", "haproxy", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make bench-deps): %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "lb-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	for _, s := range sizes {
		if err := os.WriteFile(filepath.Join(www, fmt.Sprintf("%d.bin", s)), bytes.Repeat([]byte("x"), s), 0o644); err != nil {
			return err
		}
	}
	var backends []string
	for i := 0; i < 2; i++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		cmd, err := startNginxBackend(filepath.Join(dir, fmt.Sprintf("backend%d", i)), port, www)
		if err != nil {
			return err
		}
		defer stopProc(cmd)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitPort(addr); err != nil {
			return fmt.Errorf("backend %d: %w", i, err)
		}
		backends = append(backends, addr)
	}
	kinds := []proxyKind{
		{"direct", "wrk straight at one nginx backend", nil},
		{"nginx", "nginx " + version("nginx", "-v") + ", 2 workers, upstream keepalive 64", startNginxProxy(pins)},
		{"haproxy-http", "HAProxy " + version("haproxy", "-v") + ", nbthread 2, mode http, http-reuse always", startHAProxy(pins, "http")},
		{"haproxy-tcp", "HAProxy, nbthread 2, mode tcp", startHAProxy(pins, "tcp")},
		{"pictl-http", "pictl balancer L7, GOMAXPROCS=2", startPictl(pins, self, balancer.ModeHTTP)},
		{"pictl-tcp", "pictl balancer L4 (splice), GOMAXPROCS=2", startPictl(pins, self, balancer.ModeTCP)},
	}
	if only != "" {
		want := map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			want[s] = true
		}
		var keep []proxyKind
		for _, k := range kinds {
			if want[k.name] {
				keep = append(keep, k)
			}
		}
		kinds = keep
	}
	var results []result
	for _, size := range sizes {
		for _, c := range conns {
			for _, k := range kinds {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r, err := measure(ctx, k, dir, backends, size, c, d, warmup, pins, profDir)
				if err != nil {
					return fmt.Errorf("%s %d B %d conns: %w", k.name, size, c, err)
				}
				fmt.Fprintf(os.Stderr, "%-13s %6d B %4d conns: %8.0f req/s p50 %v p99 %v cpu/req %v errors %d\n",
					r.proxy, r.size, r.conns, r.reqs, r.p50, r.p99, r.cpuPerReq, r.errors)
				results = append(results, r)
			}
		}
	}
	printTable(os.Stdout, kinds, results, sizes, conns, d, pins)
	return nil
}

func measure(ctx context.Context, k proxyKind, dir string, backends []string, size, conns int, d, warmup time.Duration, pins cpuPins, profDir string) (result, error) {
	r := result{proxy: k.name, size: size, conns: conns}
	target := backends[0]
	var cmd *exec.Cmd
	if k.start != nil {
		port, err := freePort()
		if err != nil {
			return r, err
		}
		prof := ""
		if profDir != "" && strings.HasPrefix(k.name, "pictl") {
			prof = filepath.Join(profDir, fmt.Sprintf("%s-%d-%d.pprof", k.name, size, conns))
		}
		cmd, err = k.start(filepath.Join(dir, k.name), port, backends, prof)
		if err != nil {
			return r, err
		}
		defer stopProc(cmd)
		target = fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitPort(target); err != nil {
			return r, err
		}
	}
	url := fmt.Sprintf("http://%s/%d.bin", target, size)
	if warmup > 0 {
		if _, err := runWrk(ctx, pins.tool, url, conns, warmup); err != nil {
			return r, err
		}
	}
	var cpu0 time.Duration
	if cmd != nil {
		cpu0 = treeCPU(cmd.Process.Pid)
	}
	out, err := runWrk(ctx, pins.tool, url, conns, d)
	if err != nil {
		return r, err
	}
	if err := parseWrk(out, &r); err != nil {
		return r, err
	}
	if cmd != nil && r.total > 0 {
		r.cpuPerReq = (treeCPU(cmd.Process.Pid) - cpu0) / time.Duration(r.total)
	}
	return r, nil
}

func runWrk(ctx context.Context, cpus, url string, conns int, d time.Duration) (string, error) {
	cmd := pinned(cpus, "wrk", "-t2", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(int(d.Seconds()))+"s", "--latency", url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("wrk: %w: %s", err, out.String())
	}
	return out.String(), nil
}

var (
	wrkTotal  = regexp.MustCompile(`(\d+) requests in`)
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkPct    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func parseWrk(out string, r *result) error {
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("wrk output without a request count: %s", out)
	}
	r.total, _ = strconv.ParseInt(m[1], 10, 64)
	if m := wrkRate.FindStringSubmatch(out); m != nil {
		r.reqs, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		if m[1] == "50" {
			r.p50 = time.Duration(v * float64(unit))
		} else {
			r.p99 = time.Duration(v * float64(unit))
		}
	}
	if m := wrkErrors.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	return nil
}

func printTable(w io.Writer, kinds []proxyKind, results []result, sizes, conns []int, d time.Duration, pins cpuPins) {
	fmt.Fprintf(w, "\nHTTP load balancing on loopback: 2 nginx backends, wrk -t2, %s per row, %s\n", d, pins)
	fmt.Fprintf(w, "%-14s %7s %5s %10s %9s %9s %12s %8s %9s\n", "proxy", "size", "conns", "req/s", "p50", "p99", "CPU µs/req", "errors", "×nginx")
	nginxCPU := map[[2]int]time.Duration{}
	for _, r := range results {
		if r.proxy == "nginx" {
			nginxCPU[[2]int{r.size, r.conns}] = r.cpuPerReq
		}
	}
	for _, size := range sizes {
		for _, c := range conns {
			for _, r := range results {
				if r.size != size || r.conns != c {
					continue
				}
				cpu, ratio := "-", "-"
				if r.cpuPerReq > 0 {
					cpu = fmt.Sprintf("%.1f", float64(r.cpuPerReq)/float64(time.Microsecond))
					if n := nginxCPU[[2]int{size, c}]; n > 0 {
						ratio = fmt.Sprintf("%.2f", float64(r.cpuPerReq)/float64(n))
					}
				}
				fmt.Fprintf(w, "%-14s %7s %5d %10.0f %9s %9s %12s %8d %9s\n", r.proxy, sizeLabel(size), c, r.reqs,
					round(r.p50), round(r.p99), cpu, r.errors, ratio)
			}
		}
	}
	for _, k := range kinds {
		fmt.Fprintf(w, "  %s: %s\n", k.name, k.about)
	}
	fmt.Fprintln(w, "  CPU µs/req: the proxy's user+system time (/proc, all its processes and threads) over the run / requests; ×nginx: that over nginx's")
}

func sizeLabel(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func round(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

func version(tool, flag string) string {
	out, _ := exec.Command(tool, flag).CombinedOutput()
	m := regexp.MustCompile(`(\d+\.\d+\.\d+)`).FindString(string(out))
	return m
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never listened: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stopProc(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// treeCPU is user+system time of pid and all its descendants (nginx's
// workers), from /proc/*/stat in clock ticks of 10 ms. taskset execs, so
// pid is the proxy itself.
func treeCPU(root int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	ticks := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		u, _ := strconv.Atoi(f[11])
		k, _ := strconv.Atoi(f[12])
		parent[pid] = ppid
		ticks[pid] = u + k
	}
	total := 0
	for pid, t := range ticks {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				total += t
				break
			}
		}
	}
	return time.Duration(total) * 10 * time.Millisecond
}

func startNginxBackend(dir string, port int, www string) (*exec.Cmd, error) {
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
error_log %[1]s/error.log error;
pid %[1]s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  sendfile on; tcp_nopush on;
  keepalive_requests 1000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:%[2]d; root %[3]s; }
}
`, dir, port, www)
	return startWithConf(dir, "", conf, "nginx", "-c", "nginx.conf", "-p", dir, "-e", dir+"/error.log")
}

func startNginxProxy(pins cpuPins) func(string, int, []string, string) (*exec.Cmd, error) {
	return func(dir string, port int, backends []string, _ string) (*exec.Cmd, error) {
		var servers strings.Builder
		for _, b := range backends {
			fmt.Fprintf(&servers, "server %s;\n", b)
		}
		conf := fmt.Sprintf(`daemon off;
worker_processes 2;
error_log %[1]s/error.log error;
pid %[1]s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000; keepalive_timeout 300s;
  upstream members { least_conn; %[3]s keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      proxy_pass http://members;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, port, servers.String())
		return startWithConf(dir, pins.proxy, conf, "nginx", "-c", "nginx.conf", "-p", dir, "-e", dir+"/error.log")
	}
}

func startHAProxy(pins cpuPins, mode string) func(string, int, []string, string) (*exec.Cmd, error) {
	return func(dir string, port int, backends []string, _ string) (*exec.Cmd, error) {
		var servers strings.Builder
		for i, b := range backends {
			fmt.Fprintf(&servers, "  server m%d %s\n", i, b)
		}
		extra := "  option forwardfor\n  http-reuse always\n"
		if mode == "tcp" {
			extra = ""
		}
		conf := fmt.Sprintf(`global
  nbthread 2
  maxconn 4000
defaults
  mode %[2]s
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
%[3]sfrontend fe
  bind 127.0.0.1:%[1]d
  default_backend members
backend members
  balance leastconn
%[4]s`, port, mode, extra, servers.String())
		return startWithConf(dir, pins.proxy, conf, "haproxy", "-f", filepath.Join(dir, "nginx.conf"), "-db")
	}
}

func startPictl(pins cpuPins, self, mode string) func(string, int, []string, string) (*exec.Cmd, error) {
	return func(dir string, port int, backends []string, prof string) (*exec.Cmd, error) {
		args := []string{self, "proxy", "-mode", mode, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-members", strings.Join(backends, ",")}
		if prof != "" {
			args = append(args, "-cpuprofile", prof)
		}
		cmd := pinned(pins.proxy, args...)
		procs := "2"
		if n := os.Getenv("PICTL_LBBENCH_GOMAXPROCS"); n != "" {
			procs = n
		}
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+procs)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return cmd, nil
	}
}

func startWithConf(dir, cpus, conf string, argv ...string) (*exec.Cmd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := pinned(cpus, argv...)
	log, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	return cmd, nil
}

// proxyMain runs pictl's balancer with static members until SIGTERM.
func proxyMain(args []string) int {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	mode := fs.String("mode", balancer.ModeHTTP, "http or tcp")
	listen := fs.String("listen", "127.0.0.1:8080", "listen address")
	members := fs.String("members", "", "comma-separated addr:port")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here")
	fs.Parse(args)
	// One wrk stands for many clients, and back-to-back wrk runs (the
	// warm-up, then the measured one) overlap by the connections still
	// closing: the default 256 per client address refused some of the
	// 256-connection rows' first connections with 503.
	cfgB := balancer.Config{Mode: *mode, MaxConnsPerClient: 4096}
	b, err := balancer.New(cfgB)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var list []balancer.Member
	for i, m := range strings.Split(*members, ",") {
		ap, err := netip.ParseAddrPort(m)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		list = append(list, balancer.Member{Name: fmt.Sprintf("m%d", i), Addr: ap.Addr(), Port: ap.Port(), Ready: true})
	}
	b.SetMembers(list)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := b.Serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
