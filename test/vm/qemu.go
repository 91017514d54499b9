package vm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables read by the harness.
const (
	// LogDirEnv names a directory where Net.Start writes each guest's
	// time-stamped console (<test>-<guest>.console.log).
	LogDirEnv = "PICTL_TEST_VM_LOGDIR"
	// VerboseEnv, when set, streams every console line to the test log.
	VerboseEnv = "PICTL_TEST_VM_VERBOSE"
	// AccelEnv overrides the QEMU accelerator (default tcg; "kvm" on hosts
	// with a real KVM — the project's machines only have a nested kvm_pvm
	// that cannot run a normal guest).
	AccelEnv = "PICTL_TEST_ACCEL"
)

// BootMode is how the guest gets its kernel.
type BootMode int

const (
	// DirectBoot loads Kernel and Initrd with QEMU's -kernel/-initrd/-append
	// (no firmware network boot; fastest with the PVH vmlinux).
	DirectBoot BootMode = iota
	// PXEBoot boots like a real machine: SeaBIOS, then the NIC's iPXE ROM
	// (Debian ipxe-qemu) does DHCP and TFTP (-boot n). The network must
	// provide the DHCP and TFTP answers described in the package doc.
	PXEBoot
)

// Machine describes one QEMU guest.
type Machine struct {
	// Name identifies the guest in results and logs; default "guest".
	Name string
	// MAC of the NIC; default 52:54:00 followed by 3 bytes derived from Name.
	MAC string
	// Mode selects direct kernel boot or PXE.
	Mode BootMode
	// Kernel, Initrd and Cmdline are used by DirectBoot (see KernelArgs).
	Kernel, Initrd, Cmdline string
	// NIC is the QEMU device model; default virtio-net-pci (e1000 costs
	// about 1 s per DHCP exchange under QEMU).
	NIC string
	// MemoryMB default 512, CPUs default 1 (-smp 2 is slower on 2 cores).
	MemoryMB, CPUs int
	// Timeout bounds the whole run (QEMU is killed); default 240 s.
	Timeout time.Duration
	// Netns is the network namespace QEMU runs in, Tap the tap device there.
	// Net.Start fills both.
	Netns, Tap string
	// ConsoleLog, if set, receives the time-stamped console as it arrives.
	ConsoleLog string
	// OnLine is called for every console line, in order, from one goroutine
	// (never concurrently). It may call Guest.Send.
	OnLine func(g *Guest, l Line)
	// OnWait is called when the guest prints "PXE-WAIT NAME" (the init's
	// wait_host NAME); the guest blocks until it returns. The harness then
	// answers "PXE-GO NAME" on the console, or "PXE-ABORT NAME" if it
	// returned an error (also recorded in Result.Err). Nil answers at once.
	OnWait func(ctx context.Context, name string) error
	// StopWhen ends the run successfully when it returns true for a line
	// (for guests that print no NETBOOT-OK, e.g. a systemd image): QEMU is
	// killed and Result.Stopped is set.
	StopWhen func(l Line) bool
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
	// Logf, if set, receives every console line as it arrives.
	Logf func(format string, args ...any)
}

func (m Machine) name() string {
	if m.Name == "" {
		return "guest"
	}
	return m.Name
}

// MACFor derives a stable locally administered MAC (QEMU's 52:54:00 prefix)
// from a name, so each named guest keeps its MAC across runs.
func MACFor(name string) string {
	h := sha256.Sum256([]byte(name))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}.String()
}

// QEMUArgs returns the qemu-system-x86_64 arguments for m (without the
// program name), as the recipe measured them.
func QEMUArgs(m Machine) ([]string, error) {
	accel := os.Getenv(AccelEnv)
	if accel == "" {
		accel = "tcg"
	}
	mem, cpus, nic, mac := m.MemoryMB, m.CPUs, m.NIC, m.MAC
	if mem == 0 {
		mem = 512
	}
	if cpus == 0 {
		cpus = 1
	}
	if nic == "" {
		nic = "virtio-net-pci"
	}
	if mac == "" {
		mac = MACFor(m.name())
	}
	if _, err := net.ParseMAC(mac); err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.name(), err)
	}
	if m.Tap == "" {
		return nil, fmt.Errorf("machine %s: no tap device", m.name())
	}
	args := []string{
		"-name", m.name(),
		"-accel", accel, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		// -nographic puts SeaBIOS and iPXE on the serial port too.
		"-nodefaults", "-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
		"-netdev", "tap,id=n0,ifname=" + m.Tap + ",script=no,downscript=no",
	}
	dev := nic + ",netdev=n0,mac=" + mac
	switch m.Mode {
	case DirectBoot:
		if m.Kernel == "" || m.Initrd == "" {
			return nil, fmt.Errorf("machine %s: direct boot needs Kernel and Initrd", m.name())
		}
		// No option ROM: nothing would use it and it costs start-up time.
		args = append(args, "-device", dev+",romfile=",
			"-kernel", m.Kernel, "-initrd", m.Initrd, "-append", m.Cmdline)
	case PXEBoot:
		args = append(args, "-boot", "n", "-device", dev)
	default:
		return nil, fmt.Errorf("machine %s: unknown boot mode %d", m.name(), m.Mode)
	}
	return append(args, m.ExtraArgs...), nil
}

// Guest is a running QEMU.
type Guest struct {
	m      Machine
	cmd    *exec.Cmd
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time

	stdinMu sync.Mutex
	stdin   io.WriteCloser

	mu      sync.Mutex
	res     Result
	stopped bool
	stderr  strings.Builder

	lines      chan Line
	dispatched chan struct{}
	done       chan struct{}
}

// Start runs QEMU for m (inside m.Netns via `ip netns exec` when set) and
// returns at once; Wait collects the result. Cancelling ctx kills QEMU.
func Start(ctx context.Context, m Machine) (*Guest, error) {
	args, err := QEMUArgs(m)
	if err != nil {
		return nil, err
	}
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 240 * time.Second
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	prog := append([]string{"qemu-system-x86_64"}, args...)
	if m.Netns != "" {
		// ip netns exec execs QEMU in place: the PID is QEMU's.
		prog = append([]string{"ip", "netns", "exec", m.Netns}, prog...)
	}
	cmd := exec.CommandContext(gctx, prog[0], prog[1:]...)
	cmd.WaitDelay = 5 * time.Second
	// If the test binary dies (go test -timeout), QEMU goes with it instead
	// of running on in a namespace nobody deletes. `ip netns exec` execs QEMU
	// in place, which keeps the setting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	g := &Guest{m: m, cmd: cmd, ctx: gctx, cancel: cancel,
		lines: make(chan Line, 1<<16), dispatched: make(chan struct{}), done: make(chan struct{})}
	g.res.Name = m.name()
	g.res.ConsoleLog = m.ConsoleLog

	var logFile *os.File
	if m.ConsoleLog != "" {
		if logFile, err = os.Create(m.ConsoleLog); err != nil {
			cancel()
			return nil, fmt.Errorf("console log: %w", err)
		}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		cancel()
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stdout, cmd.Stdin = outW, inR
	cmd.Stderr = &lockedWriter{mu: &g.mu, w: &g.stderr}
	g.stdin = inW
	g.start = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		outR.Close()
		outW.Close()
		inR.Close()
		inW.Close()
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	outW.Close()
	inR.Close()

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(g.lines)
		g.readConsole(outR, logFile)
	}()
	go g.dispatch()
	go func() {
		<-readDone
		waitErr := cmd.Wait()
		outR.Close()
		<-g.dispatched
		g.mu.Lock()
		g.res.Elapsed = time.Since(g.start)
		g.res.Stderr = g.stderr.String()
		g.res.ExitCode = cmd.ProcessState.ExitCode()
		var exitErr *exec.ExitError
		if waitErr != nil && !errors.As(waitErr, &exitErr) && g.res.Err == nil && !g.stopped {
			g.res.Err = fmt.Errorf("qemu: %w", waitErr)
		}
		g.res.TimedOut = errors.Is(gctx.Err(), context.DeadlineExceeded) && !g.stopped
		g.res.Stopped = g.stopped
		g.mu.Unlock()
		if logFile != nil {
			fmt.Fprintf(logFile, "# qemu exit=%d after %.3fs\n", g.res.ExitCode, g.res.Elapsed.Seconds())
			logFile.Close()
		}
		g.stdinMu.Lock()
		g.stdin.Close()
		g.stdinMu.Unlock()
		cancel()
		close(g.done)
	}()
	return g, nil
}

// readConsole splits QEMU's output into lines; the last, unterminated
// fragment (a kernel panic, a hang mid-line) is kept too.
func (g *Guest) readConsole(r io.Reader, logFile *os.File) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		raw, err := br.ReadBytes('\n')
		if len(raw) > 0 {
			l := Line{At: time.Since(g.start), Text: cleanLine(raw[:len(raw)-boolInt(raw[len(raw)-1] == '\n')])}
			if logFile != nil {
				fmt.Fprintln(logFile, l.String())
			}
			if g.m.Logf != nil {
				g.m.Logf("%s %s", g.m.name(), l)
			}
			g.lines <- l
		}
		if err != nil {
			return
		}
	}
}

// dispatch records lines and runs the callbacks off the reader goroutine,
// so a slow OnWait (restarting a server) never stalls QEMU's output.
func (g *Guest) dispatch() {
	defer close(g.dispatched)
	for l := range g.lines {
		g.mu.Lock()
		events := g.res.add(l)
		g.mu.Unlock()
		if g.m.OnLine != nil {
			g.m.OnLine(g, l)
		}
		for _, e := range events {
			if e.marker == "PXE-WAIT" {
				g.answerWait(e.arg)
			}
		}
		if g.m.StopWhen != nil && g.m.StopWhen(l) {
			g.mu.Lock()
			g.stopped = true
			g.mu.Unlock()
			g.cancel()
		}
	}
}

// answerWait runs OnWait for a guest blocked in wait_host NAME and lets it
// continue.
func (g *Guest) answerWait(name string) {
	verb := "PXE-GO"
	if g.m.OnWait != nil {
		if err := g.m.OnWait(g.ctx, name); err != nil {
			verb = "PXE-ABORT"
			g.mu.Lock()
			if g.res.Err == nil {
				g.res.Err = fmt.Errorf("OnWait(%s): %w", name, err)
			}
			g.mu.Unlock()
		}
	}
	_ = g.Send(verb + " " + name)
}

// Send writes line and a newline to the guest's serial console.
func (g *Guest) Send(line string) error {
	g.stdinMu.Lock()
	defer g.stdinMu.Unlock()
	_, err := io.WriteString(g.stdin, line+"\n")
	return err
}

// Wait blocks until QEMU has exited and every line was dispatched, and
// returns the result.
func (g *Guest) Wait() *Result {
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.res
	return &r
}

// Snapshot returns the result so far (QEMU may still run).
func (g *Guest) Snapshot() *Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.res
	r.Lines = append([]Line(nil), r.Lines...)
	r.Stages = append([]Stage(nil), r.Stages...)
	r.Checks = append([]CheckResult(nil), r.Checks...)
	r.Elapsed = time.Since(g.start)
	return &r
}

// Kill ends QEMU (if it still runs) and waits for it.
func (g *Guest) Kill() {
	g.cancel()
	<-g.done
}

// PID is QEMU's process id.
func (g *Guest) PID() int { return g.cmd.Process.Pid }

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
