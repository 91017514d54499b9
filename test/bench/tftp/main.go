// Command tftp-bench measures pictl's tftpd against tftpd-hpa side by side,
// on the same files, in one run: a server namespace and a client namespace
// joined by a veth (MTU 1500), tftpd-hpa (`in.tftpd -L -s DIR`) and pictl's
// tftpd (this binary re-executed as `serve-pictl` inside the server
// namespace) both listening there, curl as the client.
//
// pictl sends windowed (8 blocks ahead of their ACKs) to clients shown to
// take it — iPXE nodes, and configured prefixes (tftpd.Config.WindowClients);
// curl is such a client (tftpd's TestWindowedClients), so the benchmark
// configures the client namespace's prefix. On a lossy link the library's
// window fails a transfer and pictl moves the client to lock-step
// (TestWindowedFailureDemotesToLockStep); the veth here loses nothing. "pictl lock-step" is the
// same server with nothing configured: what a Raspberry Pi gets (the Pi
// firmware is not shown to take a window), and what the bare library does
// (session 3 measured bare pin/tftp equal to it on every row; -bare adds it).
//
// Rows (each run alternates which server goes first; the median is shown):
//   - one 64 MiB download at blksize 1468 and at 512;
//   - a boot storm: N clients (default 50), each with its own address,
//     each fetching an 8 MiB kernel and 20 small files in one curl run.
//
// A transfer fails if curl exits non-zero or reports a size other than the
// file's; every file is checksummed once per server before timing.
//
// Needs root, iproute2, curl, tftpd-hpa.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	runs         = flag.Int("runs", 3, "runs of every row (median reported)")
	stormClients = flag.Int("storm-clients", 50, "concurrent clients in the boot storm")
	stormBlksize = flag.Int("storm-blksize", 1468, "blksize the storm clients ask for")
	only         = flag.String("only", "", "run only rows whose name contains this")
	oursEnv      = flag.String("ours-env", "", "extra environment for pictl's server, e.g. GOMAXPROCS=1")
	oursFlags    = flag.String("ours-flags", "", "extra flags for serve-pictl, e.g. -cache=false or -cpuprofile=/tmp/p")
	keep         = flag.Bool("keep", false, "keep the work directory")
	withBare     = flag.Bool("bare", false, "also measure a bare pin/tftp server (the library's default path, files opened per request) for reference")
)

const (
	serverIP = "10.250.0.1"
	clientIP = "10.250.0.2"
	hpaPort  = 69
	oursPort = 6969
	barePort = 6970
	lockPort = 6971
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-pictl" {
		servePictl(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "serve-bare" {
		serveBare(os.Args[2:])
		return
	}
	flag.Parse()
	log.SetFlags(0)
	if os.Geteuid() != 0 {
		log.Fatal("tftp-bench needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "curl", "in.tftpd"} {
		if _, err := exec.LookPath(tool); err != nil {
			log.Fatalf("%s not found (Debian: iproute2, curl, tftpd-hpa)", tool)
		}
	}
	b, err := setup()
	if err != nil {
		log.Fatal(err)
	}
	defer b.teardown()
	if err := b.run(); err != nil {
		b.teardown()
		log.Fatal(err)
	}
}

type bench struct {
	dir          string
	srvNS, cliNS string
	procs        []*exec.Cmd
	files        map[string][]byte // name → content
	kernel       string
	small        []string
	clientAddrs  []string
	ours, hpa    server
	bare, lock   server
	servers      []server // measured, in order
	teardownOnce sync.Once
	oursLog      *bytes.Buffer
	hpaLogs      *bytes.Buffer
	cgroups      []string
}

type server struct {
	name string
	port int
}

func setup() (*bench, error) {
	tag := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	b := &bench{
		srvNS: "pb-tftps-" + tag, cliNS: "pb-tftpc-" + tag,
		files: map[string][]byte{}, oursLog: &bytes.Buffer{}, hpaLogs: &bytes.Buffer{},
		hpa: server{"tftpd-hpa", hpaPort}, ours: server{"pictl", oursPort}, bare: server{"bare-pin", barePort},
		lock: server{"pictl-lockstep", lockPort},
	}
	dir, err := os.MkdirTemp("", "tftp-bench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	// tftpd-hpa chroots into the directory and drops to user tftp.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(7, 11))
	addFile := func(name string, size int) error {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		b.files[name] = data
		return os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	if err := addFile("big.bin", 64<<20); err != nil {
		return nil, err
	}
	b.kernel = "kernel8.img"
	if err := addFile(b.kernel, 8<<20); err != nil {
		return nil, err
	}
	// The small files of a Pi boot: firmware pieces, DTBs, overlays,
	// config. Sizes from a Raspberry Pi OS boot partition.
	sizes := []int{52456, 7314, 5405, 3187, 32142, 54597, 55217, 31566, 3913, 1467,
		5523, 2075, 221, 1024, 4096, 12041, 829, 90112, 18000, 300000}
	for i, size := range sizes {
		name := fmt.Sprintf("f%02d.dtb", i)
		if err := addFile(name, size); err != nil {
			return nil, err
		}
		b.small = append(b.small, name)
	}

	steps := [][]string{
		{"netns", "add", b.srvNS},
		{"netns", "add", b.cliNS},
		{"-n", b.srvNS, "link", "set", "lo", "up"},
		{"-n", b.cliNS, "link", "set", "lo", "up"},
		{"link", "add", "tb0", "netns", b.srvNS, "mtu", "1500", "type", "veth", "peer", "name", "tb1", "netns", b.cliNS, "mtu", "1500"},
		{"-n", b.srvNS, "addr", "add", serverIP + "/24", "dev", "tb0"},
		{"-n", b.cliNS, "addr", "add", clientIP + "/24", "dev", "tb1"},
		{"-n", b.srvNS, "link", "set", "tb0", "up"},
		{"-n", b.cliNS, "link", "set", "tb1", "up"},
	}
	for i := range *stormClients {
		a := fmt.Sprintf("10.250.1.%d", i+1)
		b.clientAddrs = append(b.clientAddrs, a)
		steps = append(steps, []string{"-n", b.cliNS, "addr", "add", a + "/16", "dev", "tb1"})
	}
	b.teardownOnce = sync.Once{}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			b.teardown()
			return nil, fmt.Errorf("ip %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	// The storm's addresses are in 10.250.0.0/16: give the server the
	// route back (its own address is a /24).
	if out, err := exec.Command("ip", "-n", b.srvNS, "route", "add", "10.250.0.0/16", "dev", "tb0").CombinedOutput(); err != nil {
		b.teardown()
		return nil, fmt.Errorf("route: %v\n%s", err, out)
	}

	hpa := exec.Command("ip", "netns", "exec", b.srvNS, "in.tftpd", "-L", "-s", dir, "-a", fmt.Sprintf("%s:%d", serverIP, hpaPort))
	hpa.Stdout, hpa.Stderr = b.hpaLogs, b.hpaLogs
	if err := hpa.Start(); err != nil {
		b.teardown()
		return nil, fmt.Errorf("start tftpd-hpa: %w", err)
	}
	b.procs = append(b.procs, hpa)
	b.account(b.hpa, hpa.Process.Pid)

	self, err := os.Executable()
	if err != nil {
		b.teardown()
		return nil, err
	}
	b.servers = []server{b.hpa}
	for _, s := range []struct {
		srv     server
		windows string
	}{{b.ours, "10.250.0.0/16"}, {b.lock, ""}} {
		args := []string{"netns", "exec", b.srvNS, self, "serve-pictl", "-dir", dir, "-addr", fmt.Sprintf("%s:%d", serverIP, s.srv.port),
			"-window-clients", s.windows}
		if *oursFlags != "" {
			args = append(args, strings.Fields(*oursFlags)...)
		}
		ours := exec.Command("ip", args...)
		ours.Env = append(os.Environ(), strings.Fields(*oursEnv)...)
		ours.Stdout, ours.Stderr = b.oursLog, b.oursLog
		if err := ours.Start(); err != nil {
			b.teardown()
			return nil, fmt.Errorf("start pictl tftpd: %w", err)
		}
		b.procs = append(b.procs, ours)
		b.account(s.srv, ours.Process.Pid)
		b.servers = append(b.servers, s.srv)
	}
	if *withBare {
		bare := exec.Command("ip", "netns", "exec", b.srvNS, self, "serve-bare", "-dir", dir, "-addr", fmt.Sprintf("%s:%d", serverIP, barePort))
		bare.Stdout, bare.Stderr = b.oursLog, b.oursLog
		if err := bare.Start(); err != nil {
			b.teardown()
			return nil, fmt.Errorf("start bare pin/tftp: %w", err)
		}
		b.procs = append(b.procs, bare)
		b.account(b.bare, bare.Process.Pid)
		b.servers = append(b.servers, b.bare)
	}
	time.Sleep(500 * time.Millisecond) // both servers bind at once; nothing to poll but a transfer
	return b, nil
}

func (b *bench) teardown() {
	b.teardownOnce.Do(func() {
		for _, p := range b.procs {
			if p.Process != nil {
				// `ip netns exec` execs the server, so this PID is the server.
				_ = p.Process.Signal(os.Interrupt)
				done := make(chan struct{})
				go func() { p.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = p.Process.Kill()
					<-done
				}
			}
		}
		for _, dir := range b.cgroups {
			_ = os.Remove(dir) // empty once its processes have exited
		}
		_ = exec.Command("ip", "netns", "del", b.srvNS).Run()
		_ = exec.Command("ip", "netns", "del", b.cliNS).Run()
		if !*keep && b.dir != "" {
			os.RemoveAll(b.dir)
		}
	})
}

type row struct {
	name  string
	unit  string
	value map[string][]float64 // server → per-run values
	cpu   map[string][]float64 // server → CPU ms per MiB served
	fails map[string]int
}

func (b *bench) run() error {
	// Correctness first: every file from both servers, checksummed.
	for _, srv := range b.servers {
		if err := b.verify(srv); err != nil {
			return fmt.Errorf("%s: %w\nserver log:\n%s%s", srv.name, err, b.oursLog, b.hpaLogs)
		}
	}
	var rows []*row
	add := func(name, unit string, measure func(server) (float64, float64, int, error)) error {
		if *only != "" && !strings.Contains(name, *only) {
			return nil
		}
		r := &row{name: name, unit: unit, value: map[string][]float64{}, cpu: map[string][]float64{}, fails: map[string]int{}}
		for i := range *runs {
			order := slices.Clone(b.servers)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, srv := range order {
				cpu0 := b.serverCPU(srv)
				v, mib, fails, err := measure(srv)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", name, srv.name, err)
				}
				cpuMs := float64(b.serverCPU(srv)-cpu0) / 1e6 / mib
				r.value[srv.name] = append(r.value[srv.name], v)
				r.cpu[srv.name] = append(r.cpu[srv.name], cpuMs)
				r.fails[srv.name] += fails
				fmt.Fprintf(os.Stderr, "  %-34s %-10s run %d: %8.1f %s, server CPU %5.1f ms/MiB, %d failed\n", name, srv.name, i+1, v, unit, cpuMs, fails)
			}
		}
		rows = append(rows, r)
		return nil
	}
	if err := add("64 MiB download, blksize 1468", "MiB/s", func(s server) (float64, float64, int, error) { return b.download(s, "big.bin", 1468) }); err != nil {
		return err
	}
	if err := add("64 MiB download, blksize 512", "MiB/s", func(s server) (float64, float64, int, error) { return b.download(s, "big.bin", 512) }); err != nil {
		return err
	}
	storm := fmt.Sprintf("storm %d x (8 MiB + 20 files)", *stormClients)
	if err := add(storm, "MiB/s", b.storm); err != nil {
		return err
	}
	printTable(rows, b.servers)
	return nil
}

// curl runs curl in the client namespace.
func (b *bench) curl(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", b.cliNS, "curl", "-sS"}, args...)...)
}

func (b *bench) url(s server, name string) string {
	return fmt.Sprintf("tftp://%s:%d/%s", serverIP, s.port, name)
}

func (b *bench) verify(s server) error {
	out := filepath.Join(b.dir, ".verify")
	defer os.Remove(out)
	for name, want := range b.files {
		for _, blk := range []string{"512", "1468"} {
			if name == "big.bin" && blk == "512" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			msg, err := b.curl(ctx, "--tftp-blksize", blk, "-o", out, b.url(s, name)).CombinedOutput()
			cancel()
			if err != nil {
				return fmt.Errorf("verify %s: %v %s", name, err, msg)
			}
			got, err := os.ReadFile(out)
			if err != nil || sha256.Sum256(got) != sha256.Sum256(want) {
				return fmt.Errorf("verify %s (blksize %s): content differs (%d bytes, want %d)", name, blk, len(got), len(want))
			}
		}
	}
	return nil
}

// download times one curl fetch of name; MiB/s of wall time, and MiB.
func (b *bench) download(s server, name string, blksize int) (float64, float64, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := b.curl(ctx, "--tftp-blksize", strconv.Itoa(blksize), "-o", "/dev/null", "-w", "%{size_download}", b.url(s, name)).Output()
	elapsed := time.Since(start)
	mib := float64(len(b.files[name])) / (1 << 20)
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(len(b.files[name])) {
		return 0, mib, 1, nil
	}
	return mib / elapsed.Seconds(), mib, 0, nil
}

// storm starts every client at once; each fetches the kernel and the small
// files in one curl run from its own address. Aggregate MiB/s of wall time
// until the last client is done.
func (b *bench) storm(s server) (float64, float64, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	names := append([]string{b.kernel}, b.small...)
	var total int64
	for _, n := range names {
		total += int64(len(b.files[n]))
	}
	type result struct {
		out []byte
		err error
	}
	results := make([]result, len(b.clientAddrs))
	var wg sync.WaitGroup
	start := time.Now()
	for i, addr := range b.clientAddrs {
		args := []string{"--interface", addr, "--tftp-blksize", strconv.Itoa(*stormBlksize), "-w", "%{size_download}\n"}
		for _, n := range names {
			args = append(args, "-o", "/dev/null", b.url(s, n))
		}
		cmd := b.curl(ctx, args...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := cmd.Output()
			results[i] = result{out, err}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	fails := 0
	for _, r := range results {
		sizes := strings.Fields(string(r.out))
		for j, n := range names {
			if j >= len(sizes) || sizes[j] != strconv.Itoa(len(b.files[n])) {
				fails++
			}
		}
		var ee *exec.ExitError
		if r.err != nil && !errors.As(r.err, &ee) {
			return 0, 0, 0, r.err
		}
	}
	mib := float64(total*int64(len(b.clientAddrs))) / (1 << 20)
	return mib / elapsed.Seconds(), mib, fails, nil
}

// cpuacctRoot is the cgroup-v1 CPU accounting hierarchy. Each server runs
// in a cgroup of its own there, so its CPU time includes tftpd-hpa's
// per-transfer children, which it does not reap into its own counters.
const cpuacctRoot = "/sys/fs/cgroup/cpuacct"

func (b *bench) cgroupFor(s server) string {
	return filepath.Join(cpuacctRoot, "pictl-tftp-bench-"+b.srvNS+"-"+s.name)
}

// account moves a server process into its accounting cgroup; without
// cgroup v1 cpuacct the CPU column stays empty.
func (b *bench) account(s server, pid int) {
	dir := b.cgroupFor(s)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return
	}
	b.cgroups = append(b.cgroups, dir)
	_ = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// serverCPU is the CPU time in nanoseconds the server has used so far.
func (b *bench) serverCPU(s server) int64 {
	data, err := os.ReadFile(filepath.Join(b.cgroupFor(s), "cpuacct.usage"))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return v
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printTable(rows []*row, servers []server) {
	fmt.Printf("\n%-34s %10s", "row (median of runs, MiB/s)", "tftpd-hpa")
	for _, s := range servers[1:] {
		fmt.Printf(" %15s %6s", s.name, "ratio")
	}
	fmt.Printf("  %-12s %s\n", "failed", "CPU ms/MiB (same order)")
	for _, r := range rows {
		h := median(r.value["tftpd-hpa"])
		fmt.Printf("%-34s %10.1f", r.name, h)
		var fails, cpu []string
		for _, s := range servers {
			fails = append(fails, strconv.Itoa(r.fails[s.name]))
			cpu = append(cpu, fmt.Sprintf("%.1f", median(r.cpu[s.name])))
			if s.name == "tftpd-hpa" {
				continue
			}
			v := median(r.value[s.name])
			ratio := 0.0
			if h > 0 {
				ratio = v / h
			}
			fmt.Printf(" %15.1f %5.2fx", v, ratio)
		}
		fmt.Printf("  %-12s %s\n", strings.Join(fails, "/"), strings.Join(cpu, "/"))
	}
}
