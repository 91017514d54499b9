package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/test/internal/ganesha"
	"github.com/pictl/pictl/test/internal/nfs3client"
)

// server is one boot server set under test, started fresh for every run
// in the server namespace.
type server interface {
	name() string
	// start serves pis (their reservations) and returns when every
	// service answers.
	start(ctx context.Context, pis []*pi) error
	// pids are the processes whose memory and CPU the table reports.
	pids() []int
	// warmFiles are the served copies of the boot files and working set,
	// read once before each run so both servers start with a warm page
	// cache.
	warmFiles(set []wsFile) []string
	stop()
	logPath() string
}

// proc is a child process in the server namespace.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func startProc(logPath string, env []string, name string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// ip netns exec execs the program in place: the PID is the server's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", serverNS, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.exited) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after 10 s, to this process only.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitTCP waits until addr accepts a connection from the server
// namespace (dialled from a Pi namespace).
func waitTCP(ctx context.Context, ns, addr string, alive func() bool) error {
	for {
		c, err := dialIn(ns, time.Now().Add(time.Second))("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if !alive() {
			return fmt.Errorf("%s: process exited", addr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never accepted: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// --- pictl

// pictlServer is `pictl serve` with a generated cluster.yaml: full DHCP
// with a reservation (MAC, serial, model, address) per Pi, the imported
// storm image as default, and the Pi 3 reply delay set to 0 (dnsmasq has
// none; see the table header).
type pictlServer struct {
	bin, dir, src string
	logLevel      string
	profDir       string // "": no CPU profiles
	starts        int
	log           *slog.Logger
	p             *proc
}

const imageName = "storm"

func (s *pictlServer) name() string    { return "pictl" }
func (s *pictlServer) logPath() string { return filepath.Join(s.dir, "run", "serve.log") }
func (s *pictlServer) pids() []int     { return []int{s.p.pid()} }

func (s *pictlServer) pristine() string { return filepath.Join(s.dir, "pristine") }

// prepare imports the image once into a pristine state directory (kept
// across bench runs while the source manifest is unchanged); each run
// starts from a hard-linked copy of it.
func (s *pictlServer) prepare(ctx context.Context) error {
	man, err := os.ReadFile(s.src + ".manifest")
	if err != nil {
		return err
	}
	stamp := filepath.Join(s.pristine(), "imported")
	if b, err := os.ReadFile(stamp); err == nil && string(b) == string(man) {
		return nil
	}
	if err := os.RemoveAll(s.pristine()); err != nil {
		return err
	}
	if err := os.MkdirAll(s.pristine(), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(s.pristine(), "cluster.yaml")
	if err := os.WriteFile(cfg, []byte(clusterYAML(filepath.Join(s.pristine(), "state"), "", nil, false)), 0o644); err != nil {
		return err
	}
	s.log.Info("pictl image import (once)", "source", s.src)
	cmd := exec.CommandContext(ctx, s.bin, "image", "import", "--default", imageName, s.src)
	cmd.Env = append(os.Environ(), "PICTL_CONFIG="+cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pictl image import: %w\n%s", err, out)
	} else {
		s.log.Info("imported", "out", strings.TrimSpace(string(out)))
	}
	return os.WriteFile(stamp, man, 0o644)
}

// clusterYAML is the storm's cluster.yaml. dhcp.pi3_delay is 0: the 2 s
// default exists for real Pi 3 ROMs; the simulated ones do not wedge and
// dnsmasq delays nothing by default.
func clusterYAML(state, socket string, pis []*pi, withImage bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "controller:\n  interfaces: [%s]\n  address: %s\n  state_dir: %s\n", serverIf, serverCIDR, state)
	if socket != "" {
		fmt.Fprintf(&b, "  api_socket: %s\n", socket)
	}
	b.WriteString("dhcp:\n  mode: full\n  range: 10.77.200.1-10.77.200.250\n  lease: 1h\n  pi3_delay: 0s\n")
	b.WriteString("discovery: record\n")
	if withImage {
		fmt.Fprintf(&b, "images:\n  %s: {arch: %s, default: true}\n", imageName, runtime.GOARCH)
	} else {
		b.WriteString("images: {}\n")
	}
	if len(pis) == 0 {
		b.WriteString("nodes: {}\n")
		return b.String()
	}
	b.WriteString("nodes:\n")
	for _, p := range pis {
		fmt.Fprintf(&b, "  %s: {mac: \"%s\", serial: \"%s\", model: %s, ip: %s}\n", p.name, p.mac, p.serial, p.model.clusterModel(), p.ip)
	}
	return b.String()
}

func (s *pictlServer) start(ctx context.Context, pis []*pi) error {
	run := filepath.Join(s.dir, "run")
	if err := os.RemoveAll(run); err != nil {
		return err
	}
	state := filepath.Join(run, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	// A fresh state (no leases, no node layers) sharing the imported
	// image's files by hard link.
	if out, err := exec.Command("cp", "-al", filepath.Join(s.pristine(), "state", "images"), state).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -al image: %w: %s", err, out)
	}
	cfg := filepath.Join(run, "cluster.yaml")
	sock := filepath.Join(run, "pictl.sock")
	if err := os.WriteFile(cfg, []byte(clusterYAML(state, sock, pis, true)), 0o644); err != nil {
		return err
	}
	args := []string{"serve", "--log-level", s.logLevel}
	if s.profDir != "" {
		if err := os.MkdirAll(s.profDir, 0o755); err != nil {
			return err
		}
		s.starts++
		prof := filepath.Join(s.profDir, fmt.Sprintf("pictl-N%d-%d.pprof", len(pis), s.starts))
		args = append(args, "--cpuprofile", prof)
		s.log.Info("pictl CPU profile", "file", prof)
	}
	p, err := startProc(s.logPath(), []string{"PICTL_CONFIG=" + cfg, "PICTL_SOCKET=" + sock}, s.bin, args...)
	if err != nil {
		return err
	}
	s.p = p
	client := api.NewClient(sock)
	deadline := time.Now().Add(60 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Status(sctx)
		cancel()
		if err == nil {
			break
		}
		if !p.running() || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("pictl serve not ready (%v):\n%s", err, tail(s.logPath(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (s *pictlServer) warmFiles(set []wsFile) []string {
	img := filepath.Join(s.pristine(), "state", "images", imageName)
	var out []string
	for _, f := range firmwareFiles {
		out = append(out, filepath.Join(img, "boot", f.name))
	}
	for _, f := range set {
		out = append(out, filepath.Join(img, "root", f.path))
	}
	return out
}

func (s *pictlServer) stop() { s.p.stop(); s.p = nil }

// --- dnsmasq + nfs-ganesha

// dnsmasqServer is dnsmasq (full DHCP from a pool with a dhcp-host
// reservation per Pi, pxe-service for the Pis, its TFTP server) and
// nfs-ganesha (VFS FSAL, NFSv3) exporting the same tree, as a PiServer-
// style setup would: per-serial TFTP folders with each node's own
// cmdline.txt, the firmware hard-linked.
type dnsmasqServer struct {
	dir, src string
	rpcbind  *proc
	dnsmasq  *proc
	ganesha  *proc
}

const (
	ganeshaNFSPort   = 2049
	ganeshaMountPort = 20048
)

func (s *dnsmasqServer) name() string    { return "dnsmasq+ganesha" }
func (s *dnsmasqServer) logPath() string { return filepath.Join(s.dir, "dnsmasq.log") }
func (s *dnsmasqServer) pids() []int     { return []int{s.dnsmasq.pid(), s.ganesha.pid()} }

func (s *dnsmasqServer) firmwareDir() string { return filepath.Join(s.src, "boot", "firmware") }

func (s *dnsmasqServer) warmFiles(set []wsFile) []string {
	var out []string
	for _, f := range firmwareFiles {
		out = append(out, filepath.Join(s.firmwareDir(), f.name))
	}
	for _, f := range set {
		out = append(out, filepath.Join(s.src, f.path))
	}
	return out
}

// tftpTree lays out dnsmasq's TFTP root: the firmware at the top (the
// Pi 3 ROM asks bootcode.bin without a prefix) and a folder per serial.
func (s *dnsmasqServer) tftpTree(pis []*pi) (string, error) {
	root := filepath.Join(s.dir, "tftp")
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	link := func(dst string) error {
		if err := os.MkdirAll(filepath.Join(dst, "overlays"), 0o755); err != nil {
			return err
		}
		for _, f := range append(firmwareFiles, struct {
			name string
			size int
		}{"config.txt", 0}) {
			if err := os.Link(filepath.Join(s.firmwareDir(), f.name), filepath.Join(dst, f.name)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := link(root); err != nil {
		return "", err
	}
	for _, p := range pis {
		d := filepath.Join(root, p.prefix)
		if err := link(d); err != nil {
			return "", err
		}
		cmdline := fmt.Sprintf("console=serial0,115200 console=tty1 root=/dev/nfs nfsroot=%s:%s,vers=3,tcp,port=%d,mountport=%d,nolock rw ip=dhcp rootwait quiet\n",
			serverIP, s.src, ganeshaNFSPort, ganeshaMountPort)
		if err := os.WriteFile(filepath.Join(d, "cmdline.txt"), []byte(cmdline), 0o644); err != nil {
			return "", err
		}
	}
	return root, nil
}

func (s *dnsmasqServer) start(ctx context.Context, pis []*pi) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	tftpRoot, err := s.tftpTree(pis)
	if err != nil {
		return fmt.Errorf("tftp tree: %w", err)
	}
	leases := filepath.Join(s.dir, "dnsmasq.leases")
	_ = os.Remove(leases)
	var conf strings.Builder
	fmt.Fprintf(&conf, `# Generated by the storm bench: full DHCP + PXE for Pis + TFTP, no DNS.
port=0
interface=%s
bind-interfaces
dhcp-authoritative
dhcp-range=10.77.200.1,10.77.200.250,255.255.0.0,1h
dhcp-leasefile=%s
# Do not ping an address before offering it (3 s per new client).
no-ping
pxe-service=0,"Raspberry Pi Boot"
enable-tftp
tftp-root=%s
# The default of 50 concurrent transfers would refuse a 100-Pi storm.
tftp-max=1000
log-facility=%s
`, serverIf, leases, tftpRoot, s.logPath())
	for _, p := range pis {
		fmt.Fprintf(&conf, "dhcp-host=%s,%s\n", p.mac, p.ip)
	}
	confPath := filepath.Join(s.dir, "dnsmasq.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		return err
	}
	gconf := filepath.Join(s.dir, "ganesha.conf")
	if err := os.WriteFile(gconf, []byte(ganesha.Config(ganeshaNFSPort, ganeshaMountPort, s.src, "/storm")), 0o644); err != nil {
		return err
	}
	if s.rpcbind, err = startProc(filepath.Join(s.dir, "rpcbind.log"), nil, "rpcbind", "-f", "-w"); err != nil {
		return fmt.Errorf("rpcbind (Debian rpcbind): %w", err)
	}
	time.Sleep(300 * time.Millisecond)
	if s.ganesha, err = startProc(filepath.Join(s.dir, "ganesha.out"), nil, "ganesha.nfsd", "-F", "-f", gconf,
		"-L", filepath.Join(s.dir, "ganesha.log"), "-p", filepath.Join(s.dir, "ganesha.pid")); err != nil {
		return err
	}
	if s.dnsmasq, err = startProc(filepath.Join(s.dir, "dnsmasq.out"), nil, "dnsmasq", "--keep-in-foreground", "--conf-file="+confPath); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// Ready means MOUNT answers from a Pi's side (ganesha listens before
	// its exports are loaded).
	ns := pis[0].ns
	if err := ipBatch(ns, []string{"addr add 10.77.255.254/16 dev eth0"}); err != nil {
		return err
	}
	defer ipBatch(ns, []string{"addr flush dev eth0", "neigh flush dev eth0"})
	addr := net.JoinHostPort(serverIP, strconv.Itoa(ganeshaNFSPort))
	if err := waitTCP(wctx, ns, addr, s.ganesha.running); err != nil {
		return fmt.Errorf("ganesha: %w\n%s", err, tail(filepath.Join(s.dir, "ganesha.log"), 20))
	}
	for {
		err := probeMount(ns, s.src)
		if err == nil {
			break
		}
		if wctx.Err() != nil || !s.ganesha.running() {
			return fmt.Errorf("ganesha: mount never worked: %w\n%s", err, tail(filepath.Join(s.dir, "ganesha.log"), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !s.dnsmasq.running() {
		return fmt.Errorf("dnsmasq exited:\n%s\n%s", tail(filepath.Join(s.dir, "dnsmasq.out"), 20), tail(s.logPath(), 20))
	}
	return nil
}

func (s *dnsmasqServer) stop() {
	s.dnsmasq.stop()
	s.ganesha.stop()
	s.rpcbind.stop()
	s.dnsmasq, s.ganesha, s.rpcbind = nil, nil, nil
}

// probeMount mounts export from namespace ns and lets go.
func probeMount(ns, export string) error {
	addr := net.JoinHostPort(serverIP, strconv.Itoa(ganeshaNFSPort))
	maddr := net.JoinHostPort(serverIP, strconv.Itoa(ganeshaMountPort))
	c, err := nfs3client.MountDial(dialIn(ns, time.Now().Add(2*time.Second)), addr, maddr, export)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// --- /proc

// procStats is a process's peak resident set (VmHWM) and CPU time.
type procStats struct {
	hwmKB int64
	cpu   time.Duration
}

func readProc(pid int) (procStats, error) {
	var st procStats
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			st.hwmKB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// Fields after the parenthesised command name: state is field 3,
	// utime 14 and stime 15 (in clock ticks, 100 per second on Linux).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return st, errors.New("bad /proc stat")
	}
	f2 := strings.Fields(string(b[i+1:]))
	if len(f2) < 13 {
		return st, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f2[11], 10, 64)
	stt, _ := strconv.ParseInt(f2[12], 10, 64)
	st.cpu = time.Duration(ut+stt) * 10 * time.Millisecond
	return st, nil
}

func sumProc(pids []int) (procStats, error) {
	var sum procStats
	for _, pid := range pids {
		st, err := readProc(pid)
		if err != nil {
			return sum, err
		}
		sum.hwmKB += st.hwmKB
		sum.cpu += st.cpu
	}
	return sum, nil
}

// warm reads files once so the run starts with them in the page cache.
func warm(paths []string) error {
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
