// Command storm is the boot-storm benchmark: N simulated Raspberry Pis of
// mixed models (3B, 3B+, 4, 5) power on at once and netboot from pictl,
// then from dnsmasq + nfs-ganesha serving the same files, and it prints
// how long the storm took and what it cost the servers.
//
//	go run ./test/bench/storm [-n 1,25,100] [-servers pictl,dnsmasq] [-pictl bin/pictl] [-runs 3]
//	    [-pace none,real] [-pace-set 4.power-on=5.2s,all.rate-elf=3MB] [-jitter 0.2] [-pace-seed 1]
//	    [-only tftp|nfs] [-pictl-log-level debug] [-v]
//
// Each Pi has its own network namespace whose eth0 (a veth into a
// switch namespace's bridge, where the server's one NIC also plugs in)
// carries the Pi's MAC; the Pi has its own serial. A boot is what the network sees of a real one:
//
//  1. the boot ROM's / bootloader's DHCP with the model's options (60, 93,
//     94, 97, 55; the Pi 3s' shared xid and no DHCPREQUEST), retransmitted
//     after 1, 2, 4, 4... s;
//  2. the model's TFTP sequence: tsize probes aborted after the OACK (or
//     block 1 on a Pi 3), missing-file probes, start*.elf, fixup,
//     config.txt, DTB, overlays, cmdline.txt, the kernel — with the
//     <serial>/ prefix — retransmitting after -rto;
//  3. the kernel's own DHCP (DORA), then an NFSv3 MOUNT of the root named
//     by nfsroot= in the cmdline.txt it got, READDIRPLUS of the
//     directories systemd and udev list, and a read of the boot working set
//     (-ws-files files, at most -ws-mb MB: the largest files of a real
//     Debian tree).
//
// A stage that fails restarts the Pi's boot (firmware does that, it does
// not retry a file); a Pi not done within -timeout counts as failed. Both
// servers run in full DHCP mode (a pool plus a reservation per Pi), the
// page cache is warmed with the served files before every run, and the
// servers are fresh processes with fresh lease state for every run. The
// simulator shares the machine's CPUs with the server and each run prints
// both CPU times.
//
// Two pacings, one table each (both by default):
//
//   - -pace none: the Pis boot as fast as the servers answer (no firmware
//     or kernel think time), so all-booted is roughly the storm's CPU work
//     over the cores: server throughput.
//   - -pace real: each Pi spends the time a real one spends between the
//     exchanges — boot ROM/EEPROM start before the first DISCOVER, the
//     firmware's work between TFTP requests and when start*.elf takes
//     over, its TFTP receive rate (a block is ACKed no earlier than the
//     rate allows), the firmware's set-up before the kernel, the kernel's
//     start before its DHCP and NFS mount, and the systemd/udev pace at
//     which the working set is read (file i of n is wanted i/n of the way
//     through a userspace span). Every delay and rate is scaled by a
//     factor in [1-jitter, 1+jitter] drawn, delay by delay, from the Pi's
//     own generator (seeded by -pace-seed and the Pi), so the Pis are not
//     in lock-step and every server meets the same boards.
//     This measures whether the server keeps up with N real Pis. The
//     figures and their sources are in pace.go; -pace-set overrides any
//     of them, and each run prints the table it used.
//
// all-booted runs from power-on (every Pi at once) to the last Pi's last
// working-set read. Each run reports, per stage, the mean and maximum per
// Pi and, paced, the part that was the Pi's own modelled time; the rest
// is waiting for the server and the network.
//
// Needs root, bin/pictl (make build), dnsmasq (dnsmasq-base), ganesha.nfsd
// (nfs-ganesha, nfs-ganesha-vfs), rpcbind and the debootstrap tree
// internal/testcache builds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	counts  []int
	servers []string
	work    string
	pictl   string
	timeout time.Duration
	rto     time.Duration
	readers int
	depth   int
	wsFiles int
	wsMB    int
	verbose bool
	prepare bool
	logLvl  string
	profDir string // pictl CPU profiles, "" = none
	only    string
	runs    int
	paces   []string // "none", "real"
	pace    pacing   // the -pace real table after -pace-set
}

func main() {
	var o options
	var counts, servers string
	flag.StringVar(&counts, "n", "1,25,100", "storm sizes (Pis booting at once)")
	flag.StringVar(&servers, "servers", "pictl,dnsmasq", "server sets: pictl, dnsmasq (dnsmasq + nfs-ganesha)")
	flag.StringVar(&o.work, "work", "/var/tmp/pictl-storm", "work directory (tree, pictl state, logs)")
	flag.StringVar(&o.pictl, "pictl", "bin/pictl", "pictl binary (make build)")
	flag.DurationVar(&o.timeout, "timeout", 120*time.Second, "a Pi not booted by then counts as failed")
	flag.DurationVar(&o.rto, "rto", time.Second, "TFTP retransmission timeout")
	flag.IntVar(&o.readers, "readers", 4, "working-set files each Pi reads at once")
	flag.IntVar(&o.depth, "depth", 2, "READs in flight per file")
	flag.IntVar(&o.wsFiles, "ws-files", 300, "files in the boot working set")
	flag.IntVar(&o.wsMB, "ws-mb", 60, "MB in the boot working set")
	flag.BoolVar(&o.verbose, "v", false, "print every Pi's result")
	flag.StringVar(&o.logLvl, "pictl-log-level", "info", "pictl serve --log-level (debug is for diagnosis: it costs CPU)")
	flag.StringVar(&o.profDir, "pictl-cpuprofile", "", "directory: write a CPU profile of every pictl serve run into it (pictl-N<n>-<k>.pprof; go tool pprof bin/pictl FILE)")
	flag.StringVar(&o.only, "only", "", "diagnosis: tftp = stop each boot after TFTP; nfs = fetch only cmdline.txt, then mount and read")
	flag.IntVar(&o.runs, "runs", 1, "rounds of every (server, N); the table shows the median run by all-booted time")
	flag.BoolVar(&o.prepare, "prepare", false, "only prepare the tree and pictl's image, then exit")
	var paces, paceSet string
	flag.StringVar(&paces, "pace", "none,real", "Pi pacing, one table each: none (answer at once: server throughput), real (a real Pi's own time between exchanges)")
	flag.StringVar(&paceSet, "pace-set", "", "override -pace real timings: MODEL.FIELD=VALUE,... (MODEL 3B, 3B+, 4, 5, all; FIELD "+strings.Join(paceFields, ", ")+"; durations like 2.5s, rates in MB/s)")
	flag.Float64Var(&o.pace.jitter, "jitter", 0.2, "-pace real: each delay and rate scaled by a factor in [1-jitter, 1+jitter], drawn per Pi")
	flag.Uint64Var(&o.pace.seed, "pace-seed", 1, "-pace real: seed of the per-Pi jitter (the same boards for every server)")
	flag.Parse()
	for _, s := range strings.Split(paces, ",") {
		if s = strings.TrimSpace(s); s != "none" && s != "real" {
			fmt.Fprintf(os.Stderr, "storm: unknown -pace %q (none, real)\n", s)
			os.Exit(2)
		}
		o.paces = append(o.paces, s)
	}
	o.pace.models = defaultPace()
	if o.pace.jitter < 0 || o.pace.jitter >= 1 {
		fmt.Fprintln(os.Stderr, "storm: -jitter must be in [0, 1)")
		os.Exit(2)
	}
	for _, e := range strings.Split(paceSet, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if err := o.pace.set(e); err != nil {
			fmt.Fprintln(os.Stderr, "storm:", err)
			os.Exit(2)
		}
	}
	for _, s := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 999 {
			fmt.Fprintf(os.Stderr, "storm: bad -n %q\n", s)
			os.Exit(2)
		}
		o.counts = append(o.counts, n)
	}
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "pictl" && s != "dnsmasq" {
			fmt.Fprintf(os.Stderr, "storm: unknown server %q\n", s)
			os.Exit(2)
		}
		o.servers = append(o.servers, strings.TrimSpace(s))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// Signals stay caught until the network is gone: Ctrl-C cancels the
	// run, the deferred teardown still runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, log, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

// runResult is one storm: a server set and N.
type runResult struct {
	server  string
	pace    string // "none" or "real"
	n       int
	boots   []*bootResult
	allUp   time.Duration // power-on to last read, all Pis booted
	failed  int
	stats   procStats     // peak RSS at the end, CPU during the storm
	client  time.Duration // the simulator's own CPU during the storm
	busy    machineCPU    // the whole machine's busy CPU during the storm (other load included)
	err     error
	logPath string
	round   int
}

func run(ctx context.Context, log *slog.Logger, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "tar", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found", tool)
		}
	}
	if slices.Contains(o.servers, "dnsmasq") {
		for _, tool := range []string{"dnsmasq", "ganesha.nfsd", "rpcbind"} {
			if _, err := exec.LookPath(tool); err != nil {
				return fmt.Errorf("%s not found: run make bench-deps", tool)
			}
		}
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	if left := ourNamespaces(); len(left) > 0 {
		log.Info("removing namespaces an earlier run left", "count", len(left))
		if err := teardown(); err != nil {
			return err
		}
	}
	src := filepath.Join(o.work, "src")
	if err := ensureSource(ctx, log, src); err != nil {
		return err
	}
	set, err := workingSet(src, o.wsFiles, uint64(o.wsMB)*1e6)
	if err != nil {
		return fmt.Errorf("working set: %w", err)
	}
	var wsBytes uint64
	for _, f := range set {
		wsBytes += f.size
	}
	env := &bootEnv{set: set, dirs: existingDirs(src, bootDirs), readers: o.readers, depth: o.depth, rto: o.rto, only: o.only}
	log.Info("boot working set", "files", len(set), "MB", fmt.Sprintf("%.1f", float64(wsBytes)/1e6), "largest", set[largestIdx(set)].path)

	var srvs []server
	for _, name := range o.servers {
		switch name {
		case "pictl":
			bin, err := filepath.Abs(o.pictl)
			if err != nil {
				return err
			}
			if _, err := os.Stat(bin); err != nil {
				return fmt.Errorf("pictl binary: %w (run make build)", err)
			}
			ps := &pictlServer{bin: bin, dir: filepath.Join(o.work, "pictl"), src: src, logLevel: o.logLvl, profDir: o.profDir, log: log}
			if err := ps.prepare(ctx); err != nil {
				return err
			}
			srvs = append(srvs, ps)
		case "dnsmasq":
			srvs = append(srvs, &dnsmasqServer{dir: filepath.Join(o.work, "dnsmasq"), src: src})
		}
	}

	if o.prepare {
		return nil
	}
	maxN := slices.Max(o.counts)
	pis := newPis(maxN)
	log.Info("creating the network", "pis", maxN, "server namespace", serverNS)
	defer func() {
		if terr := teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		} else {
			log.Info("network namespaces removed")
		}
	}()
	if err := buildNetwork(pis); err != nil {
		return fmt.Errorf("network: %w", err)
	}

	results := map[string][]*runResult{}
	for _, pace := range o.paces {
		penv := *env
		if pace == "real" {
			penv.pace = &o.pace
			fmt.Println(o.pace.table())
		}
		for round := range max(1, o.runs) {
			for _, n := range o.counts {
				for _, s := range srvs {
					if ctx.Err() != nil {
						break
					}
					r := storm(ctx, log, s, pis[:n], &penv, o)
					r.pace, r.round = pace, round+1
					results[pace] = append(results[pace], r)
					printRun(r, o.verbose)
				}
			}
		}
	}
	// Both tables at the end, whatever stopped the runs.
	for _, pace := range o.paces {
		if len(results[pace]) > 0 {
			printTable(o, pace, results[pace], len(set), wsBytes)
		}
	}
	return ctx.Err()
}

func largestIdx(set []wsFile) int {
	best := 0
	for i, f := range set {
		if f.size > set[best].size {
			best = i
		}
	}
	return best
}

// storm runs one storm: fresh server, all pis at once.
func storm(ctx context.Context, log *slog.Logger, s server, pis []*pi, env *bootEnv, o options) *runResult {
	r := &runResult{server: s.name(), n: len(pis), logPath: s.logPath()}
	if err := resetNetwork(pis); err != nil {
		r.err = err
		return r
	}
	if err := warm(s.warmFiles(env.set)); err != nil {
		r.err = fmt.Errorf("warm cache: %w", err)
		return r
	}
	pace := "none"
	if env.pace != nil {
		pace = "real"
	}
	log.Info("storm", "server", s.name(), "pis", len(pis), "pace", pace)
	if err := s.start(ctx, pis); err != nil {
		s.stop()
		r.err = err
		return r
	}
	defer s.stop()
	before, err := sumProc(s.pids())
	if err != nil {
		r.err = err
		return r
	}
	clientBefore, busyBefore := selfCPU(), machineBusy()
	bctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var wg sync.WaitGroup
	gate := make(chan struct{})
	r.boots = make([]*bootResult, len(pis))
	for i, p := range pis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			r.boots[i] = p.boot(bctx, env)
		}()
	}
	close(gate) // power on
	wg.Wait()
	after, err := sumProc(s.pids())
	if err != nil {
		r.err = err
		return r
	}
	r.stats = procStats{hwmKB: after.hwmKB, cpu: after.cpu - before.cpu}
	r.client = selfCPU() - clientBefore
	r.busy = machineBusy().minus(busyBefore)
	var first, last time.Time
	for _, b := range r.boots {
		if !b.ok {
			r.failed++
		}
		if first.IsZero() || b.start.Before(first) {
			first = b.start
		}
		if b.end.After(last) {
			last = b.end
		}
	}
	r.allUp = last.Sub(first)
	return r
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (r *runResult) bootTimes() []time.Duration {
	var out []time.Duration
	for _, b := range r.boots {
		if b.ok {
			out = append(out, b.end.Sub(b.start))
		}
	}
	return out
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

// printRun prints a run's detail: per-stage times, counters, failures.
func printRun(r *runResult, verbose bool) {
	if r.err != nil {
		fmt.Printf("  %s N=%d run %d: error: %v\n", r.server, r.n, r.round, r.err)
		return
	}
	var sum, mx [numStages]time.Duration
	var dhcpSent, dhcpReplies, files, missing, retrans, restarts int
	var tbytes, nbytes int64
	for _, b := range r.boots {
		for i := range numStages {
			sum[i] += b.stages[i]
			mx[i] = max(mx[i], b.stages[i])
		}
		dhcpSent += b.dhcpSent
		dhcpReplies += b.dhcpReplies
		files += b.tftpFiles
		missing += b.tftpMissing
		retrans += b.tftpRetrans
		restarts += b.attempts - 1
		tbytes += b.tftpBytes
		nbytes += b.nfsBytes
	}
	fmt.Printf("  %s N=%d pace %s run %d: all booted in %s s, %d failed; per stage mean/max s:", r.server, r.n, r.pace, r.round, secs(r.allUp), r.failed)
	for i := range numStages {
		fmt.Printf(" %s %s/%s", stageNames[i], secs(sum[i]/time.Duration(len(r.boots))), secs(mx[i]))
	}
	if r.pace == "real" {
		own := r.meanThink()
		fmt.Printf("\n    of which the Pi's own modelled time, mean s:")
		for i := range numStages {
			fmt.Printf(" %s %s", stageNames[i], secs(own[i]))
		}
	}
	fmt.Printf("\n    server CPU %.1f s, simulator CPU %.1f s, machine busy %.1f s of %.0f CPU-seconds (%.1f s neither: other processes, kernel threads; softirq, the kernel's packet switching and delivery for everyone, counted in whichever, %.1f s)",
		r.stats.cpu.Seconds(), r.client.Seconds(), r.busy.all.Seconds(), r.allUp.Seconds()*float64(runtime.NumCPU()), max(0, (r.busy.all-r.stats.cpu-r.client).Seconds()), r.busy.softirq.Seconds())
	fmt.Printf("\n    DHCP %d sent/%d replies, TFTP %d files %.0f MB, %d not-found answers, %d retransmits; NFS %.0f MB; %d boot restarts\n",
		dhcpSent, dhcpReplies, files, float64(tbytes)/1e6, missing, retrans, float64(nbytes)/1e6, restarts)
	slow := map[string]int{}
	for _, b := range r.boots {
		for _, w := range b.dhcpSlow {
			slow[fmt.Sprintf("%s (Pi %s)", w[:strings.Index(w, " x")], b.pi.model)]++
			if verbose {
				fmt.Printf("    %s %s: %s\n", b.pi.name, b.pi.mac, w)
			}
		}
	}
	if len(slow) > 0 {
		keys := slices.Sorted(maps.Keys(slow))
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, slow[k]))
		}
		fmt.Printf("    DHCP exchanges that needed a retransmission: %s\n", strings.Join(parts, ", "))
	}
	shown := 0
	for _, b := range r.boots {
		if b.err != nil && (verbose || shown < 5) {
			state := "failed"
			if b.ok {
				state = "recovered"
			}
			fmt.Printf("    %s (Pi %s) %s after %d attempts at stage %s: %v\n", b.pi.name, b.pi.model, state, b.attempts, stageNames[b.errStage], b.err)
			shown++
		}
		if verbose && b.ok {
			fmt.Printf("    %s (Pi %s) %s s\n", b.pi.name, b.pi.model, secs(b.end.Sub(b.start)))
		}
	}
	if r.failed > 0 {
		fmt.Printf("    server log: %s\n", r.logPath)
	}
}

func printTable(o options, pace string, results []*runResult, wsFiles int, wsBytes uint64) {
	fmt.Printf("\nBoot storm, pace %s: mixed Pi 3B/3B+/4/5, full DHCP mode (pool + a reservation per Pi) on both servers, pictl dhcp.pi3_delay 0s\n", pace)
	fmt.Printf("(dnsmasq has no reply delay), TFTP sequence per model, NFSv3 mount + %d-file %.0f MB working set (%d files at once,\n", wsFiles, float64(wsBytes)/1e6, o.readers)
	fmt.Printf("%d READs in flight each), warm page cache, fresh server per run, server behind one veth NIC on a bridge,\n", o.depth)
	if pace == "real" {
		fmt.Printf("each Pi spends a real Pi's own time between exchanges (boot ROM, firmware, TFTP receive rate, kernel, systemd pace;\n")
		fmt.Printf("table above, jitter +-%.0f%%), simulator on the same %d CPUs, timeout %v\n", 100*o.pace.jitter, runtime.NumCPU(), o.timeout)
	} else {
		fmt.Printf("no client think time (server throughput), simulator on the same %d CPUs, timeout %v\n", runtime.NumCPU(), o.timeout)
	}
	fmt.Printf("%-16s %4s %13s %8s %8s %8s %12s %8s %s\n", "server", "N", "all-booted s", "p50 s", "p95 s", "failed", "peak RSS MB", "CPU s", "  all-booted of every run")
	byKey := map[string]*runResult{}
	groups := map[string][]*runResult{}
	var order []string
	for _, r := range results {
		k := fmt.Sprintf("%s/%d", r.server, r.n)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		g := groups[k]
		r, failed, every := medianRun(g)
		byKey[k] = r
		if r.err != nil {
			fmt.Printf("%-16s %4d %13s  error: %v\n", r.server, r.n, "-", firstLine(r.err))
			continue
		}
		bt := r.bootTimes()
		all := secs(r.allUp)
		if r.failed > 0 {
			all = "(" + all + ")"
		}
		fmt.Printf("%-16s %4d %13s %8s %8s %8d %12.1f %8.2f   %s\n", r.server, r.n, all, secs(percentile(bt, 0.5)), secs(percentile(bt, 0.95)),
			failed, float64(r.stats.hwmKB)/1024, r.stats.cpu.Seconds(), every)
	}
	fmt.Printf("Median run of %d by all-booted time (failed: summed over all runs).\n", max(1, o.runs))
	fmt.Println("all-booted: power-on to last working-set read (in parentheses when some Pis failed); RSS = VmHWM of the")
	fmt.Println("server processes (dnsmasq + ganesha.nfsd summed; rpcbind not counted); CPU = utime+stime during the storm.")
	printStages(order, byKey)
	ok := func(r *runResult) bool { return r != nil && r.err == nil && r.failed == 0 }
	minN, maxN := slices.Min(o.counts), slices.Max(o.counts)
	if a, b := byKey[fmt.Sprintf("pictl/%d", maxN)], byKey[fmt.Sprintf("pictl/%d", minN)]; maxN != minN && ok(a) && ok(b) {
		fmt.Printf("pictl(%d)/pictl(%d) all-booted: %.2fx (target <= 2x)\n", maxN, minN, a.allUp.Seconds()/b.allUp.Seconds())
	}
	for _, n := range o.counts {
		p, d := byKey[fmt.Sprintf("pictl/%d", n)], byKey[fmt.Sprintf("dnsmasq+ganesha/%d", n)]
		if ok(p) && ok(d) {
			fmt.Printf("N=%d: dnsmasq+ganesha/pictl all-booted %.2fx (>1 = pictl faster), CPU %.2fx, RSS %.2fx\n", n,
				d.allUp.Seconds()/p.allUp.Seconds(), d.stats.cpu.Seconds()/max(p.stats.cpu.Seconds(), 0.001), float64(d.stats.hwmKB)/float64(max(p.stats.hwmKB, 1)))
		}
	}
}

// printStages shows where the time of the median runs went: each stage's
// mean per Pi and, paced, how much of it was the Pi's own modelled time
// (the rest is waiting for the server, the network and the CPUs). A TFTP
// download counts size/rate as the Pi's own (or less, if it was faster).
func printStages(order []string, byKey map[string]*runResult) {
	fmt.Printf("Where the time goes, mean s per Pi (median run): stage total")
	if r := byKey[order[0]]; r != nil && r.pace == "real" {
		fmt.Printf(" / of it the Pi's own modelled time")
	}
	fmt.Printf("\n%-16s %4s", "server", "N")
	for i := range numStages {
		fmt.Printf(" %13s", stageNames[i])
	}
	fmt.Println()
	for _, k := range order {
		r := byKey[k]
		if r.err != nil || len(r.boots) == 0 {
			continue
		}
		var sum [numStages]time.Duration
		for _, b := range r.boots {
			for i := range numStages {
				sum[i] += b.stages[i]
			}
		}
		own := r.meanThink()
		fmt.Printf("%-16s %4d", r.server, r.n)
		for i := range numStages {
			cell := secs(sum[i] / time.Duration(len(r.boots)))
			if r.pace == "real" {
				cell += "/" + secs(own[i])
			}
			fmt.Printf(" %13s", cell)
		}
		fmt.Println()
	}
}

// meanThink is the mean per Pi of each stage's modelled Pi time.
func (r *runResult) meanThink() [numStages]time.Duration {
	var out [numStages]time.Duration
	if len(r.boots) == 0 {
		return out
	}
	for _, b := range r.boots {
		for i := range numStages {
			out[i] += b.think[i]
		}
	}
	for i := range out {
		out[i] /= time.Duration(len(r.boots))
	}
	return out
}

// medianRun picks the run with the median all-booted time (runs that
// errored sort last), sums the failures and lists every run's time.
func medianRun(g []*runResult) (*runResult, int, string) {
	s := slices.Clone(g)
	slices.SortStableFunc(s, func(a, b *runResult) int {
		if (a.err != nil) != (b.err != nil) {
			return boolInt(a.err != nil) - boolInt(b.err != nil)
		}
		return int(a.allUp - b.allUp)
	})
	failed := 0
	var every []string
	for _, r := range g {
		failed += r.failed
		if r.err != nil {
			every = append(every, "error")
		} else {
			every = append(every, secs(r.allUp))
		}
	}
	return s[(len(s)-1)/2], failed, strings.Join(every, " ")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// selfCPU is this process's CPU time plus that of its finished children
// (the ip commands; the servers are still running when it is read).
func selfCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// machineCPU is CPU time of all CPUs since boot: all = not idle (user,
// system, interrupts and softirq, whoever they were for), softirq = the
// part spent in softirqs, on this bench the veths' and the bridge's
// packet processing. Whose utime/stime it also shows in depends on the
// kernel: with tick accounting the task a tick interrupted (or ksoftirqd),
// with IRQ time accounting nobody's, so it is reported on its own.
type machineCPU struct{ all, softirq time.Duration }

func (a machineCPU) minus(b machineCPU) machineCPU {
	return machineCPU{all: a.all - b.all, softirq: a.softirq - b.softirq}
}

// machineBusy reads /proc/stat: it tells a storm limited by the machine
// from one limited by the server. Zero when /proc/stat cannot be read.
func machineBusy() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}
	}
	const tick = 10 * time.Millisecond // USER_HZ = 100
	var m machineCPU
	for i, v := range f[1:8] { // steal is another guest's time, not ours
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		m.all += time.Duration(n) * tick
		if i == 6 {
			m.softirq = time.Duration(n) * tick
		}
	}
	return m
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
