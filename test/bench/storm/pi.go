package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pictl/pictl/test/internal/nfs3client"
)

// model is a Raspberry Pi model as the network sees it (PROTOCOLS.md).
type model int

const (
	pi3B model = iota
	pi3BPlus
	pi4
	pi5
	numModels
)

func (m model) String() string { return [...]string{"3B", "3B+", "4", "5"}[m] }

// clusterModel is the model's name in cluster.yaml.
func (m model) clusterModel() string { return [...]string{"pi3", "pi3+", "pi4", "pi5"}[m] }

// pi is one simulated board: its identity and namespace.
type pi struct {
	idx      int
	name     string // node name
	model    model
	mac      net.HardwareAddr
	serial   string // as in cluster.yaml: 8 hex digits, 16 for a Pi 5
	prefix   string // TFTP prefix: low 32 bits of the serial
	ip       netip.Addr
	ns       string
	hostVeth string
	// cur is the address eth0 has now (on ifindex curIf); only the Pi's
	// own boot goroutine touches it.
	cur   netip.Addr
	curIf int
}

// newPis makes n boards of mixed models (3B, 3B+, 4, 5 in turn), with
// identities drawn from a fixed seed so every run boots the same boards.
func newPis(n int) []*pi {
	r := rand.New(rand.NewPCG(0x5707, 0x3))
	ouis := [numModels][][3]byte{
		pi3B:     {{0xb8, 0x27, 0xeb}},
		pi3BPlus: {{0xb8, 0x27, 0xeb}},
		pi4:      {{0xdc, 0xa6, 0x32}, {0xe4, 0x5f, 0x01}},
		pi5:      {{0x2c, 0xcf, 0x67}},
	}
	var out []*pi
	seen := map[string]bool{}
	for i := 1; i <= n; i++ {
		p := &pi{idx: i, name: fmt.Sprintf("pi%03d", i), model: model((i - 1) % int(numModels)), ns: piNS(i), hostVeth: fmt.Sprintf("vp%03d", i)}
		for {
			s := r.Uint32()
			oui := ouis[p.model][r.IntN(len(ouis[p.model]))]
			p.mac = net.HardwareAddr{oui[0], oui[1], oui[2], 0, 0, 0}
			if p.model == pi3B || p.model == pi3BPlus {
				// b8:27:eb boards: MAC = OUI + low 24 bits of the serial.
				p.mac[3], p.mac[4], p.mac[5] = byte(s>>16), byte(s>>8), byte(s)
			} else {
				p.mac[3], p.mac[4], p.mac[5] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
			}
			p.prefix = fmt.Sprintf("%08x", s)
			p.serial = p.prefix
			if p.model == pi5 {
				p.serial = fmt.Sprintf("%08x%s", r.Uint32(), p.prefix)
			}
			if !seen[p.prefix] && !seen[p.mac.String()] {
				seen[p.prefix], seen[p.mac.String()] = true, true
				break
			}
		}
		p.ip = netip.AddrFrom4([4]byte{10, 77, byte(1 + (i-1)/250), byte(1 + (i-1)%250)})
		out = append(out, p)
	}
	return out
}

// Option 55 lists (PROTOCOLS.md).
var (
	prlPi3ROM  = []byte{43, 60, 67, 128, 129, 130, 131, 132, 133, 134, 135, 66}
	prlPi3Plus = []byte{1, 3, 43, 60, 67, 128, 129, 130, 131, 132, 133, 134, 135, 66}
	prlPi4     = []byte{1, 3, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135}
	prlLinux   = []byte{1, 3, 6, 12, 15, 17, 26, 28, 40, 42}
)

// firmwareDHCP is the boot ROM's / bootloader's DHCP client.
func (p *pi) firmwareDHCP() dhcpProfile {
	prof := dhcpProfile{
		pxe: true, vendor: "PXEClient:Arch:00000:UNDI:002001",
		arch: []byte{0, 0}, undi: []byte{1, 2, 1},
	}
	sn, _ := strconv.ParseUint(p.prefix, 16, 32)
	switch p.model {
	case pi3B:
		prof.xid = 0x26f30339 // every Pi 3 uses this one
		prof.prl = prlPi3ROM
		prof.guid = append([]byte{0}, bytes.Repeat([]byte{0x44}, 16)...)
	case pi3BPlus:
		prof.xid = 0x26f30339
		prof.prl = prlPi3Plus
		prof.guid = []byte{0}
		for range 4 {
			prof.guid = binary.LittleEndian.AppendUint32(prof.guid, uint32(sn))
		}
	case pi4, pi5:
		prof.request = true
		prof.prl = prlPi4
		magic, rev := "RPi4", uint32(0xc03111) // Pi 4B 4 GB rev 1.1
		if p.model == pi5 {
			magic, rev = "RPi5", 0xd04170 // Pi 5 8 GB rev 1.0
		}
		prof.guid = append([]byte{0}, magic...)
		prof.guid = binary.LittleEndian.AppendUint32(prof.guid, rev)
		prof.guid = append(prof.guid, p.mac[2:6]...)
		prof.guid = binary.LittleEndian.AppendUint32(prof.guid, uint32(sn))
	}
	return prof
}

// step is one TFTP request of a boot: name without the prefix, whether
// it is only the tsize probe (missing files are probed and skipped), and
// whether the file is there.
type step struct {
	name     string
	probe    bool // tsize probe first
	fetch    bool // then the download
	prefixed bool
	missing  bool
	loader   loader // the firmware stage that asks (for -pace real)
}

// by marks steps as asked by loader l.
func by(l loader, steps ...step) []step {
	for i := range steps {
		steps[i].loader = l
	}
	return steps
}

// tftpSequence is the model's file sequence (PROTOCOLS.md; tftpd's
// pi_test.go plays the same ones).
func (m model) tftpSequence() []step {
	full := func(n string) step { return step{name: n, probe: true, fetch: true, prefixed: true} }
	miss := func(n string) step { return step{name: n, probe: true, prefixed: true, missing: true} }
	switch m {
	case pi3B, pi3BPlus:
		dtb := "bcm2710-rpi-3-b.dtb"
		if m == pi3BPlus {
			dtb = "bcm2710-rpi-3-b-plus.dtb"
		}
		return slices.Concat(
			by(ldROM,
				step{name: "bootcode.bin", fetch: true}, // the ROM: plain request
				step{name: "bootsig.bin", fetch: true, missing: true},
			),
			by(ldBootcode,
				step{name: "start.elf", probe: true, prefixed: true}, // is the serial folder there?
				miss("autoboot.txt"),
				full("config.txt"),
				miss("recovery.elf"),
				full("start.elf"),
				full("fixup.dat"),
			),
			by(ldElf,
				full("config.txt"),
				miss("dt-blob.bin"),
				miss("bootcfg.txt"),
				full(dtb),
				full("overlays/overlay_map.dtb"),
				full("config.txt"),
				full("overlays/vc4-kms-v3d.dtbo"),
				full("cmdline.txt"),
				miss("armstub8.bin"),
				full("kernel8.img"),
			),
		)
	case pi4:
		return slices.Concat(
			by(ldROM,
				step{name: "start4.elf", probe: true, prefixed: true},
				full("config.txt"),
				miss("pieeprom.sig"),
				miss("recovery.elf"),
				full("start4.elf"),
				full("fixup4.dat"),
			),
			by(ldElf,
				full("config.txt"),
				miss("dt-blob.bin"),
				full("bcm2711-rpi-4-b.dtb"),
				full("overlays/overlay_map.dtb"),
				full("overlays/vc4-kms-v3d-pi4.dtbo"),
				full("cmdline.txt"),
				miss("armstub8-gic.bin"),
				full("kernel8.img"),
				miss("initramfs8"),
			),
		)
	default: // pi5: no start*.elf, the firmware is in the EEPROM
		return by(ldROM,
			full("config.txt"),
			miss("pieeprom.sig"),
			full("bcm2712-rpi-5-b.dtb"),
			full("overlays/overlay_map.dtb"),
			full("overlays/vc4-kms-v3d-pi5.dtbo"),
			full("cmdline.txt"),
			full("kernel_2712.img"),
			miss("initramfs_2712"),
		)
	}
}

// Stages of a boot, in order, for the per-stage timings.
const (
	stFirmwareDHCP = iota
	stTFTP
	stKernelDHCP
	stMount
	stRead
	numStages
)

var stageNames = [numStages]string{"fw-dhcp", "tftp", "os-dhcp", "mount", "read"}

// bootResult is one Pi's outcome.
type bootResult struct {
	pi       *pi
	start    time.Time // first DISCOVER
	end      time.Time // last working-set read done
	ok       bool
	err      error
	errStage int
	attempts int // boot cycles (a failed stage restarts the boot)
	stages   [numStages]time.Duration
	// think is the part of each stage the Pi spent on its own modelled
	// work (-pace real); the rest is waiting for the server and network.
	think [numStages]time.Duration
	// Counters.
	dhcpSent, dhcpReplies, tftpFiles, tftpMissing, tftpRetrans int
	dhcpSlow                                                   []string // "os-dhcp REQUEST x2 (1.01 s)"
	tftpBytes, nfsBytes                                        int64
}

// bootEnv is what every Pi of a run shares.
type bootEnv struct {
	set     []wsFile
	dirs    []string
	readers int // files read at once (a boot's parallel start-up)
	depth   int // READs in flight per file
	rto     time.Duration
	only    string  // "", "tftp" or "nfs" (see -only)
	pace    *pacing // nil: -pace none
}

// boot plays the Pi from power-on to its working set read, restarting
// the whole boot after a failed stage (as the firmware cycles its boot
// order), until ctx ends.
func (p *pi) boot(ctx context.Context, env *bootEnv) *bootResult {
	res := &bootResult{pi: p, start: time.Now()}
	pc := env.pace.forPi(p, res)
	for ctx.Err() == nil {
		res.attempts++
		stage, err := p.bootOnce(ctx, env, pc, res)
		if err == nil {
			res.ok, res.end, res.err = true, time.Now(), nil
			return res
		}
		res.err, res.errStage = err, stage
		select {
		case <-ctx.Done():
		case <-time.After(time.Second): // reboot
		}
	}
	res.end = time.Now()
	return res
}

func (p *pi) bootOnce(ctx context.Context, env *bootEnv, pc *pacer, res *bootResult) (int, error) {
	if res.attempts > 1 {
		if err := p.flushAddr(); err != nil { // a reboot forgets the address
			return stFirmwareDHCP, err
		}
	}
	t := time.Now()
	if err := pc.sleep(ctx, stFirmwareDHCP, pc.powerOn()); err != nil {
		return stFirmwareDHCP, err
	}
	link, err := openRawLink(p.ns)
	if err != nil {
		return stFirmwareDHCP, err
	}
	defer link.Close()
	fw, err := link.exchange(ctx, p.mac, p.firmwareDHCP(), &res.dhcpSent)
	res.dhcpReplies += fw.offers
	for _, w := range fw.slow {
		res.dhcpSlow = append(res.dhcpSlow, "fw-dhcp "+w)
	}
	if err != nil {
		return stFirmwareDHCP, err
	}
	if err := p.setAddr(link.ifindex, fw.ip); err != nil {
		return stFirmwareDHCP, err
	}
	res.stages[stFirmwareDHCP] += time.Since(t)

	t = time.Now()
	// Pi 3: TFTP from whoever answered DHCP; Pi 4/5: option 66, siaddr, 54.
	tftpIP := fw.server
	if p.model == pi4 || p.model == pi5 {
		if a, err := netip.ParseAddr(fw.tftp); err == nil {
			tftpIP = a
		} else if fw.next.IsValid() && !fw.next.IsUnspecified() {
			tftpIP = fw.next
		}
	}
	cmdline, err := p.tftpBoot(ctx, tftpIP, env, pc, res)
	if err != nil {
		return stTFTP, err
	}
	res.stages[stTFTP] += time.Since(t)
	if env.only == "tftp" {
		return stTFTP, nil
	}

	// The Pi reboots into Linux: no address, a fresh socket (the old one
	// queued every broadcast reply for the other Pis during TFTP), and
	// the kernel's ipconfig does a full DORA of its own.
	link.Close()
	if err := p.flushAddr(); err != nil {
		return stKernelDHCP, err
	}
	t = time.Now()
	if err := pc.sleep(ctx, stKernelDHCP, pc.kernelUp()); err != nil {
		return stKernelDHCP, err
	}
	if link, err = openRawLink(p.ns); err != nil {
		return stKernelDHCP, err
	}
	defer link.Close()
	osl, err := link.exchange(ctx, p.mac, dhcpProfile{request: true, prl: prlLinux}, &res.dhcpSent)
	res.dhcpReplies += osl.offers
	for _, w := range osl.slow {
		res.dhcpSlow = append(res.dhcpSlow, "os-dhcp "+w)
	}
	if err != nil {
		return stKernelDHCP, err
	}
	if err := p.setAddr(link.ifindex, osl.ip); err != nil {
		return stKernelDHCP, err
	}
	res.stages[stKernelDHCP] += time.Since(t)
	link.Close()

	return p.nfsBoot(ctx, cmdline, env, pc, res)
}

// setAddr gives eth0 the leased address (what the firmware's and the
// kernel's IP stacks do internally).
func (p *pi) setAddr(ifindex int, ip netip.Addr) error {
	if err := setAddr(p.ns, ifindex, ip, true); err != nil {
		return err
	}
	p.cur, p.curIf = ip, ifindex
	return nil
}

// flushAddr removes the address a reboot forgets.
func (p *pi) flushAddr() error {
	if !p.cur.IsValid() {
		return nil
	}
	if err := setAddr(p.ns, p.curIf, p.cur, false); err != nil {
		return err
	}
	p.cur = netip.Addr{}
	return nil
}

// tftpBoot fetches the model's files and returns cmdline.txt.
func (p *pi) tftpBoot(ctx context.Context, server netip.Addr, env *bootEnv, pc *pacer, res *bootResult) (string, error) {
	listen := func() (*net.UDPConn, error) {
		var conn *net.UDPConn
		err := inNetns(p.ns, func() error {
			var err error
			conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
			return err
		})
		return conn, err
	}
	c := &tftpClient{listen: listen, server: net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 69)), rto: env.rto, retries: 5, buf: make([]byte, 2048)}
	defer func() { res.tftpRetrans += c.retransmits }()
	var fetchOpts, probeOpts []string
	probeMode := probeAfterOACK
	switch p.model {
	case pi3B, pi3BPlus:
		probeOpts, probeMode = []string{"tsize", "0"}, probeAfterBlock1
	default:
		fetchOpts = []string{"tsize", "0", "blksize", "1024"}
		probeOpts = fetchOpts
	}
	var cmdline string
	seq := p.model.tftpSequence()
	if env.only == "nfs" {
		seq = []step{{name: "cmdline.txt", fetch: true, prefixed: true}}
	}
	cur := ldROM
	for _, s := range seq {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		// The firmware's own time: a new loader starting, the set-up
		// before the kernel, the work between two requests.
		var think time.Duration
		if s.loader != cur {
			cur = s.loader
			think += pc.loaderStart(cur)
		}
		if strings.HasPrefix(s.name, "kernel") {
			think += pc.preKernel()
		}
		if err := pc.sleep(ctx, stTFTP, think); err != nil {
			return "", err
		}
		name := s.name
		if s.prefixed {
			name = p.prefix + "/" + name
		}
		if s.probe {
			if err := pc.sleep(ctx, stTFTP, pc.request()); err != nil {
				return "", err
			}
			c.onData = nil
			_, err := c.get(name, probeOpts, probeMode, false)
			switch {
			case s.missing && errors.Is(err, errNotFound):
				res.tftpMissing++
				continue
			case s.missing && err == nil:
				return "", fmt.Errorf("%s: served, but the image has no such file", name)
			case err != nil:
				return "", fmt.Errorf("probe %s: %w", name, err)
			}
		}
		if !s.fetch {
			continue
		}
		opts := fetchOpts
		if s.name == "bootcode.bin" || s.name == "bootsig.bin" {
			opts = nil // the Pi 3 boot ROM sends no options
		}
		if err := pc.sleep(ctx, stTFTP, pc.request()); err != nil {
			return "", err
		}
		c.onData = nil
		rate, start := pc.rate(s.loader), time.Now()
		atRate := func(n int64) time.Duration { return time.Duration(float64(n) / rate * 1e9) }
		if rate > 0 {
			// The Pi ACKs block k no earlier than its receive rate allows
			// (less ~1 ms of slack, see rateGate): a server that keeps up
			// makes the file take size/rate. The waits are not booked one
			// by one (the network's round trips fall between them):
			// size/rate is the Pi's own time.
			gate := &rateGate{start: start, rate: rate}
			c.onData = func(got int64, last bool) {
				_ = gate.wait(ctx, got, last)
			}
		}
		r, err := c.get(name, opts, fetchFull, s.name == "cmdline.txt")
		if rate > 0 && err == nil {
			pc.book(stTFTP, min(time.Since(start), atRate(r.size)))
		}
		if s.missing {
			if !errors.Is(err, errNotFound) {
				return "", fmt.Errorf("%s: want not found, got %v", name, err)
			}
			res.tftpMissing++
			continue
		}
		if err != nil {
			return "", fmt.Errorf("get %s: %w", name, err)
		}
		res.tftpFiles++
		res.tftpBytes += r.size
		if s.name == "cmdline.txt" {
			cmdline = string(r.data)
		}
		if err := pc.sleep(ctx, stTFTP, pc.afterFile()); err != nil {
			return "", err
		}
	}
	if cmdline == "" {
		return "", errors.New("empty cmdline.txt")
	}
	return cmdline, nil
}

// nfsRoot is what the kernel takes from nfsroot= on the command line.
type nfsRoot struct {
	server, export  string
	port, mountPort int
}

func parseNFSRoot(cmdline string) (nfsRoot, error) {
	r := nfsRoot{port: 2049}
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "nfsroot=")
		if !ok {
			continue
		}
		spec, opts, _ := strings.Cut(v, ",")
		srv, exp, ok := strings.Cut(spec, ":")
		if !ok {
			return r, fmt.Errorf("nfsroot=%s: no server", v)
		}
		r.server, r.export = srv, exp
		for _, o := range strings.Split(opts, ",") {
			k, val, _ := strings.Cut(o, "=")
			n, _ := strconv.Atoi(val)
			switch k {
			case "port":
				r.port = n
			case "mountport":
				r.mountPort = n
			}
		}
		if r.mountPort == 0 {
			r.mountPort = r.port
		}
		return r, nil
	}
	return r, fmt.Errorf("no nfsroot= in cmdline.txt %q", cmdline)
}

// nfsBoot mounts the root named on the command line and reads the boot
// working set: the directories systemd and udev list, then the files,
// env.readers at a time, each LOOKUP component by component with a
// dentry cache, as the kernel client does.
func (p *pi) nfsBoot(ctx context.Context, cmdline string, env *bootEnv, pc *pacer, res *bootResult) (int, error) {
	t := time.Now()
	if err := pc.sleep(ctx, stMount, pc.mount()); err != nil {
		return stMount, err
	}
	root, err := parseNFSRoot(cmdline)
	if err != nil {
		return stMount, err
	}
	deadline, _ := ctx.Deadline()
	dial := dialIn(p.ns, deadline)
	var c *nfs3client.Client
	// The kernel retries a refused or reset mount; so do we, until ctx ends.
	for {
		c, err = nfs3client.MountDial(dial, net.JoinHostPort(root.server, strconv.Itoa(root.port)),
			net.JoinHostPort(root.server, strconv.Itoa(root.mountPort)), root.export)
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		return stMount, fmt.Errorf("mount %s:%s: %w", root.server, root.export, err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	chunk := c.MaxRead()
	res.stages[stMount] += time.Since(t)

	t = time.Now()
	var mu sync.Mutex
	handles := map[string][]byte{"": c.Root}
	resolve := func(p string) ([]byte, error) { return resolveWith(handles, &mu, c, p) }
	for _, d := range env.dirs {
		fh, err := resolve(d)
		if err != nil {
			return stRead, err
		}
		if _, err := c.Readdirplus(fh); err != nil {
			return stRead, fmt.Errorf("readdirplus %s: %w", d, err)
		}
	}
	next := make(chan wsFile)
	errc := make(chan error, env.readers)
	var wg sync.WaitGroup
	var bytesRead int64
	for range env.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				fh, err := resolve(f.path)
				if err != nil {
					errc <- err
					return
				}
				n, err := c.ReadFile(fh, f.size, chunk, env.depth)
				if err != nil {
					errc <- fmt.Errorf("read %s: %w", f.path, err)
					return
				}
				if n != f.size {
					errc <- fmt.Errorf("read %s: %d bytes, want %d", f.path, n, f.size)
					return
				}
				mu.Lock()
				bytesRead += int64(n)
				mu.Unlock()
			}
		}()
	}
	// With -pace real, file i is wanted no earlier than i/n of the way
	// through the userspace span (systemd and udev start programs at
	// their own pace); a server that keeps up ends the stage near span.
	span := pc.span()
	var ferr error
feed:
	for i, f := range env.set {
		if span > 0 {
			if ferr = pc.until(ctx, stRead, t.Add(span*time.Duration(i)/time.Duration(len(env.set)))); ferr != nil {
				break
			}
		}
		select {
		case next <- f:
		case ferr = <-errc:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if ferr == nil {
		select {
		case ferr = <-errc:
		default:
		}
	}
	res.nfsBytes += bytesRead
	if ferr != nil {
		return stRead, ferr
	}
	res.stages[stRead] += time.Since(t)
	return stRead, nil
}

// resolveWith resolves a directory path through the handle cache.
func resolveWith(handles map[string][]byte, mu *sync.Mutex, c *nfs3client.Client, p string) ([]byte, error) {
	mu.Lock()
	fh, ok := handles[p]
	mu.Unlock()
	if ok {
		return fh, nil
	}
	dir, base := path.Split(p)
	parent, err := resolveWith(handles, mu, c, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, err
	}
	fh, _, err = c.Lookup(parent, base)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", p, err)
	}
	mu.Lock()
	handles[p] = fh
	mu.Unlock()
	return fh, nil
}

func randUint32() uint32 { return rand.Uint32() }
