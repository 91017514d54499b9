package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Pacing: how a real Pi spends its time between the network exchanges
// (-pace real). With -pace none the Pis answer at once, and the storm
// measures how fast the server burns through the work; with -pace real
// it measures whether the server keeps up with N real boards.
//
// Each figure below is either taken from a public log or, where none was
// found, chosen on the fast side (more demanding for the server) and
// marked "no figure". PHY link negotiation (2.7 s on the CM4 of
// cmprovision#43, 3.3 s on the Pi 5 of rpi-eeprom#687) is left out
// everywhere on purpose: it depends on the switch, the veths have none,
// and leaving it out packs the Pis' requests closer together. Add it with
// -pace-set 4.power-on=5.2s if wanted. Sources:
//
//	[eeprom87]   github.com/raspberrypi/rpi-eeprom/issues/87: a Pi 4's
//	             TFTP downloads with server-side timestamps and rates
//	[eeprom74]   github.com/raspberrypi/rpi-eeprom/issues/74: tcpdump of a
//	             Pi 4's RRQs
//	[eeprom857]  github.com/raspberrypi/rpi-eeprom/issues/857: a CM5 loads a
//	             43 MB boot.img over TFTP in ~13 s
//	[cmprov43]   github.com/raspberrypi/cmprovision/issues/43: a CM4's
//	             bootloader UART log with timestamps
//	[xt50]       github.com/xen-troops/meta-xt-prod-devel-rpi5/issues/50: a
//	             Pi 5's bootloader UART log with timestamps
//	[fw1041]     github.com/raspberrypi/firmware/issues/1041: tcpdump of a
//	             Pi 3B+'s RRQs (bootcode.bin, then tsize-only requests)
//	[fw1292]     github.com/raspberrypi/firmware/issues/1292: a Pi 3's
//	             start.elf log, cmdline.txt to kernel
//	[fw935]      github.com/raspberrypi/firmware/issues/935 and
//	[fw1605]     .../issues/1605: dnsmasq logs of Pi 2/3 netboots (1 s
//	             resolution)
//	[pivccu46]   github.com/alexreinert/piVCCU/issues/46: a Pi 3 NFS-root
//	             kernel log (IP-Config, VFS: Mounted root)
//	[tankado]    tankado.com "Raspberry Pi'ın açılış başarımını analiz
//	             etmek": systemd-analyze on a Pi, 4.5 s kernel + 27.3 s
//	             userspace; [juju] juju.nz/michaelh/post/2017/piboot: a
//	             trimmed Pi Zero reaches local-fs.target at 7.4 s
//
// The shared files (../shared/PROTOCOLS.md, the netboot e2e recipe, the
// seeds) carry the Pis' packets but no Pi timings; the recipe's timings
// are of QEMU x86 guests.

// loader is the firmware stage that issues a TFTP request.
type loader int

const (
	ldROM      loader = iota // Pi 3 boot ROM, Pi 4/5 EEPROM bootloader
	ldBootcode               // Pi 3 bootcode.bin
	ldElf                    // start.elf / start4.elf
	numLoaders
)

var loaderNames = [numLoaders]string{"rom", "bootcode", "elf"}

// modelPace is one model's timings. A zero duration is no pause.
type modelPace struct {
	powerOn     time.Duration             // power-on to the first DISCOVER
	request     time.Duration             // before every TFTP request, probes included
	afterFile   time.Duration             // after every completed download
	loaderStart [numLoaders]time.Duration // when bootcode.bin / start*.elf takes over
	rate        [numLoaders]float64       // the Pi's TFTP receive rate, bytes/s, per loader
	preKernel   time.Duration             // before the kernel's RRQ (firmware set-up)
	kernelUp    time.Duration             // last TFTP request to the kernel's DISCOVER
	mount       time.Duration             // kernel's DHCP done to the NFS MOUNT
	userspace   time.Duration             // span over which systemd/udev read the working set
}

// defaultPace is the -pace real table (see the sources above).
func defaultPace() [numModels]modelPace {
	p3 := modelPace{
		powerOn:   1 * time.Second,                          // no figure
		request:   400 * time.Microsecond,                   // [eeprom74] Pi 4 probe RRQs 0.4 ms apart; [fw1041] Pi 3B+ 0.4-7 ms
		afterFile: 40 * time.Millisecond,                    // [eeprom87] smallest gap between two downloads
		rate:      [numLoaders]float64{4.9e6, 4.9e6, 4.9e6}, // no Pi 3 figure: the Pi 4's fastest ([eeprom87]); [fw935] shows >= 1 MB/s
		preKernel: 2 * time.Second,                          // [fw1292] 2.06 s cmdline.txt to kernel (Pi 3); [eeprom87] 2.08 s (Pi 4)
		kernelUp:  6 * time.Second,                          // [pivccu46] IP-Config at 6.44 s kernel uptime; [fw1605] 9-10 s kernel sent to next DHCP
		mount:     30 * time.Millisecond,                    // [pivccu46] IP-Config 6.44 s, root mounted 6.47 s
		userspace: 5 * time.Second,                          // no figure for an NFS root: [tankado] 27 s, [juju] 7.4 s to local-fs
		loaderStart: [numLoaders]time.Duration{
			ldBootcode: 100 * time.Millisecond, // [fw1041] bootsig.bin RRQ 55.496 to the start.elf probe 55.606
			ldElf:      180 * time.Millisecond, // [eeprom87] fixup4.dat done 14.673 to config.txt done 14.852 (start4.elf)
		},
	}
	p4 := p3
	p4.powerOn = 2500 * time.Millisecond                      // [cmprov43] "Boot mode: NETWORK" at 2.52 s (link ready 5.21 s)
	p4.rate = [numLoaders]float64{ldROM: 1.7e6, ldElf: 4.9e6} // [eeprom87] start4.elf 2.7 MB at 1.7 MB/s; vmlinuz 5.5 MB at 4.9 MB/s
	p4.loaderStart[ldBootcode] = 0                            // no bootcode.bin
	p4.kernelUp = 3 * time.Second                             // no figure (Pi 3: 6.4 s [pivccu46])
	p5 := p4
	p5.powerOn = 4 * time.Second                 // [xt50] "BOOTLOADER release" at 3.99 s
	p5.rate = [numLoaders]float64{ldROM: 3.3e6}  // [eeprom857] 43 MB in ~13 s
	p5.loaderStart = [numLoaders]time.Duration{} // no start*.elf
	p5.preKernel = 500 * time.Millisecond        // no figure (start4.elf: 2 s)
	p5.kernelUp = 2 * time.Second                // no figure
	p5.userspace = 3 * time.Second               // no figure
	return [numModels]modelPace{pi3B: p3, pi3BPlus: p3, pi4: p4, pi5: p5}
}

// pacing is a storm's pacing: nil is -pace none.
type pacing struct {
	models [numModels]modelPace
	jitter float64 // each delay (and rate) is scaled by a factor in [1-jitter, 1+jitter]
	seed   uint64
}

// paceFields names the -pace-set fields.
var paceFields = []string{"power-on", "request", "after-file", "bootcode-start", "elf-start",
	"rate-rom", "rate-bootcode", "rate-elf", "pre-kernel", "kernel-up", "mount", "userspace"}

// set applies one -pace-set entry, "MODEL.FIELD=VALUE" with MODEL one of
// 3B, 3B+, 4, 5 or all; durations as Go durations, rates in MB/s.
func (pc *pacing) set(entry string) error {
	key, val, ok := strings.Cut(entry, "=")
	m, field, ok2 := strings.Cut(key, ".")
	if !ok || !ok2 {
		return fmt.Errorf("pace entry %q: want MODEL.FIELD=VALUE", entry)
	}
	var models []model
	for i := range numModels {
		if m == "all" || m == i.String() {
			models = append(models, i)
		}
	}
	if len(models) == 0 {
		return fmt.Errorf("pace entry %q: unknown model %q (3B, 3B+, 4, 5, all)", entry, m)
	}
	if strings.HasPrefix(field, "rate-") {
		v, err := strconv.ParseFloat(strings.TrimSuffix(val, "MB"), 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("pace entry %q: want a rate in MB/s > 0", entry)
		}
		for i, n := range loaderNames {
			if field == "rate-"+n {
				for _, mi := range models {
					pc.models[mi].rate[i] = v * 1e6
				}
				return nil
			}
		}
		return fmt.Errorf("pace entry %q: unknown field (%s)", entry, strings.Join(paceFields, ", "))
	}
	d, err := time.ParseDuration(val)
	if err != nil || d < 0 {
		return fmt.Errorf("pace entry %q: want a duration >= 0", entry)
	}
	for _, mi := range models {
		p := &pc.models[mi]
		switch field {
		case "power-on":
			p.powerOn = d
		case "request":
			p.request = d
		case "after-file":
			p.afterFile = d
		case "bootcode-start":
			p.loaderStart[ldBootcode] = d
		case "elf-start":
			p.loaderStart[ldElf] = d
		case "pre-kernel":
			p.preKernel = d
		case "kernel-up":
			p.kernelUp = d
		case "mount":
			p.mount = d
		case "userspace":
			p.userspace = d
		default:
			return fmt.Errorf("pace entry %q: unknown field (%s)", entry, strings.Join(paceFields, ", "))
		}
	}
	return nil
}

// table prints the effective timings, one model a column.
func (pc *pacing) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-15s", "pace real")
	for m := range numModels {
		fmt.Fprintf(&b, " %9s", "Pi "+m.String())
	}
	row := func(name string, f func(p modelPace) string) {
		fmt.Fprintf(&b, "\n%-15s", name)
		for m := range numModels {
			fmt.Fprintf(&b, " %9s", f(pc.models[m]))
		}
	}
	dur := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'g', 4, 64) + "s" }
	rate := func(r float64) string {
		if r == 0 {
			return "-"
		}
		return strconv.FormatFloat(r/1e6, 'g', 3, 64) + "MB/s"
	}
	row("power-on", func(p modelPace) string { return dur(p.powerOn) })
	row("request", func(p modelPace) string { return dur(p.request) })
	row("after-file", func(p modelPace) string { return dur(p.afterFile) })
	row("bootcode-start", func(p modelPace) string { return dur(p.loaderStart[ldBootcode]) })
	row("elf-start", func(p modelPace) string { return dur(p.loaderStart[ldElf]) })
	for l := range numLoaders {
		row("rate-"+loaderNames[l], func(p modelPace) string { return rate(p.rate[l]) })
	}
	row("pre-kernel", func(p modelPace) string { return dur(p.preKernel) })
	row("kernel-up", func(p modelPace) string { return dur(p.kernelUp) })
	row("mount", func(p modelPace) string { return dur(p.mount) })
	row("userspace", func(p modelPace) string { return dur(p.userspace) })
	fmt.Fprintf(&b, "\n(every delay and rate scaled per draw by a factor in [%.2f, %.2f], seed %d per Pi)", 1-pc.jitter, 1+pc.jitter, pc.seed)
	return b.String()
}

// forPi is one Pi's pacer for one boot; its draws depend only on the seed
// and the Pi, so every server meets the same boards.
func (pc *pacing) forPi(p *pi, res *bootResult) *pacer {
	if pc == nil {
		return nil
	}
	return &pacer{m: pc.models[p.model], jitter: pc.jitter, rng: rand.New(rand.NewPCG(pc.seed, uint64(p.idx))), res: res}
}

// pacer sleeps a Pi's modelled time and books it per stage. A nil pacer
// (-pace none) never waits.
type pacer struct {
	m      modelPace
	jitter float64
	rng    *rand.Rand
	res    *bootResult
}

func (pc *pacer) factor() float64 { return 1 + pc.jitter*(2*pc.rng.Float64()-1) }

// sleep waits d, jittered, booked to stage.
func (pc *pacer) sleep(ctx context.Context, stage int, d time.Duration) error {
	if pc == nil || d <= 0 {
		return nil
	}
	return pc.wait(ctx, stage, time.Duration(float64(d)*pc.factor()))
}

// until waits for t (no jitter: t comes from a jittered schedule),
// booked to stage.
func (pc *pacer) until(ctx context.Context, stage int, t time.Time) error {
	if pc == nil {
		return nil
	}
	return pc.wait(ctx, stage, time.Until(t))
}

// wait waits d and books it to stage; stage < 0 books nothing (the
// caller books what the wait stands for).
func (pc *pacer) wait(ctx context.Context, stage int, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	start := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
	}
	pc.book(stage, time.Since(start))
	return err
}

// paceSlack is how far ahead of its receive rate a Pi may run before it
// waits. Waiting for every block (~100 µs at 4.9 MB/s in 512-byte
// blocks) cost a timer per block, a large part of the simulator's CPU in
// a storm; bursts of at most ~1 ms leave the rate and each file's
// duration as they were.
const paceSlack = time.Millisecond

// rateGate holds one download to a receive rate: the ACK of the block
// that completes byte n goes out no earlier than start + n/rate. It waits
// only once the Pi is paceSlack ahead, or on the file's last block (so
// the file takes what it took with a wait per block), and reuses one
// timer.
type rateGate struct {
	start time.Time
	rate  float64 // bytes/s, > 0
	timer *time.Timer
}

// due is when n bytes are received at the rate.
func (g *rateGate) due(n int64) time.Time {
	return g.start.Add(time.Duration(float64(n) / g.rate * 1e9))
}

// wait holds the ACK after got bytes; last is the file's final block.
func (g *rateGate) wait(ctx context.Context, got int64, last bool) error {
	d := time.Until(g.due(got))
	if d <= 0 || (d < paceSlack && !last) {
		return nil
	}
	if g.timer == nil {
		g.timer = time.NewTimer(d)
	} else {
		g.timer.Reset(d) // Go >= 1.23: no stale tick to drain
	}
	select {
	case <-ctx.Done():
		g.timer.Stop()
		return ctx.Err()
	case <-g.timer.C:
		return nil
	}
}

// book adds d to the Pi's own time in stage.
func (pc *pacer) book(stage int, d time.Duration) {
	if pc != nil && stage >= 0 {
		pc.res.think[stage] += d
	}
}

// rate is the jittered receive rate of one file, bytes/s; 0 = unpaced.
func (pc *pacer) rate(l loader) float64 {
	if pc == nil || pc.m.rate[l] <= 0 {
		return 0
	}
	return pc.m.rate[l] / pc.factor()
}

// span is the jittered time over which the working set is read.
func (pc *pacer) span() time.Duration {
	if pc == nil {
		return 0
	}
	return time.Duration(float64(pc.m.userspace) * pc.factor())
}

// The model's fixed delays; zero for a nil pacer.
func (pc *pacer) get(f func(m *modelPace) time.Duration) time.Duration {
	if pc == nil {
		return 0
	}
	return f(&pc.m)
}

func (pc *pacer) powerOn() time.Duration {
	return pc.get(func(m *modelPace) time.Duration { return m.powerOn })
}
func (pc *pacer) request() time.Duration {
	return pc.get(func(m *modelPace) time.Duration { return m.request })
}
func (pc *pacer) afterFile() time.Duration {
	return pc.get(func(m *modelPace) time.Duration { return m.afterFile })
}
func (pc *pacer) loaderStart(l loader) time.Duration {
	return pc.get(func(m *modelPace) time.Duration { return m.loaderStart[l] })
}
func (pc *pacer) preKernel() time.Duration {
	return pc.get(func(m *modelPace) time.Duration { return m.preKernel })
}
func (pc *pacer) kernelUp() time.Duration {
	return pc.get(func(m *modelPace) time.Duration { return m.kernelUp })
}
func (pc *pacer) mount() time.Duration {
	return pc.get(func(m *modelPace) time.Duration { return m.mount })
}
