package vm

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Line is one line of a guest's serial console, stamped with the time since
// QEMU was started. Terminal escape sequences and carriage returns are removed.
type Line struct {
	At   time.Duration
	Text string
}

func (l Line) String() string { return fmt.Sprintf("[%8.3f] %s", l.At.Seconds(), l.Text) }

// Stage is a "PXE-STAGE name [uptime=U] [detail]" line printed by the iPXE
// script, the initramfs or the rootfs init.
type Stage struct {
	Name   string
	At     time.Duration // since QEMU start, as the line arrived
	Uptime float64       // the guest kernel's uptime in seconds; -1 when not printed (iPXE)
	Detail string
}

// CheckResult is one "CHECK ok|FAIL|XFAIL NAME[: detail]" line.
type CheckResult struct {
	Name   string
	Status string // "ok", "FAIL" or "XFAIL"
	Detail string
	At     time.Duration
}

// Result is what a guest boot produced. The zero value is an empty result.
type Result struct {
	Name   string
	Lines  []Line
	Stages []Stage
	Checks []CheckResult
	// NetbootOK is set by the final "NETBOOT-OK key=value..." marker, whose
	// fields are in Marker; ChecksOK/Failed/XFail come from it (or, without
	// the marker, from the CHECK lines seen).
	NetbootOK    bool
	Marker       map[string]string
	ChecksOK     int
	ChecksFailed int
	ChecksXFail  int
	// Fail is the text after "PXE-FAIL " (the initramfs gave up).
	Fail string
	// Panic is the first "Kernel panic - not syncing: ..." reason seen.
	Panic string
	// Waits are the names of the PXE-WAIT handshakes, in order.
	Waits []string
	// Stopped means Machine.StopWhen matched and the harness ended QEMU.
	Stopped  bool
	TimedOut bool
	// ExitCode is QEMU's exit status; -1 if it was killed.
	ExitCode   int
	Err        error // starting or waiting for QEMU failed, or OnWait failed
	Elapsed    time.Duration
	Stderr     string // QEMU's own messages
	ConsoleLog string // file with the time-stamped console, if one was written
}

// Passed reports success: the guest printed NETBOOT-OK with no failed check
// and QEMU ended by itself with status 0 — or StopWhen matched in time.
func (r *Result) Passed() bool {
	if r.Err != nil || r.TimedOut {
		return false
	}
	if r.Stopped {
		return true
	}
	return r.NetbootOK && r.ChecksFailed == 0 && r.failedLines() == 0 && r.ExitCode == 0
}

func (r *Result) failedLines() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == "FAIL" {
			n++
		}
	}
	return n
}

// Stage returns the first stage called name.
func (r *Result) Stage(name string) (Stage, bool) {
	for _, s := range r.Stages {
		if s.Name == name {
			return s, true
		}
	}
	return Stage{}, false
}

// FirstLine returns the first console line containing substr, e.g. "iPXE"
// or "Linux version", to time stages that print no marker.
func (r *Result) FirstLine(substr string) (Line, bool) {
	for _, l := range r.Lines {
		if strings.Contains(l.Text, substr) {
			return l, true
		}
	}
	return Line{}, false
}

// Tail returns the last n console lines, time-stamped, one per line.
func (r *Result) Tail(n int) string {
	lines := r.Lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Summary is a short report: outcome, stage table, failed checks.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "guest %s: passed=%v netboot_ok=%v checks ok=%d failed=%d xfail=%d exit=%d timed_out=%v stopped=%v elapsed=%.2fs",
		r.Name, r.Passed(), r.NetbootOK, r.ChecksOK, r.ChecksFailed, r.ChecksXFail, r.ExitCode, r.TimedOut, r.Stopped, r.Elapsed.Seconds())
	if r.Err != nil {
		fmt.Fprintf(&b, " err=%v", r.Err)
	}
	if r.Fail != "" {
		fmt.Fprintf(&b, "\n  PXE-FAIL %s", r.Fail)
	}
	if r.Panic != "" {
		fmt.Fprintf(&b, "\n  kernel panic: %s", r.Panic)
	}
	b.WriteString("\n" + r.StageTable())
	for _, c := range r.Checks {
		if c.Status != "ok" {
			fmt.Fprintf(&b, "  CHECK %s %s: %s\n", c.Status, c.Name, c.Detail)
		}
	}
	return b.String()
}

// StageTable lists the stages with their time since QEMU start, the step
// from the previous stage and the guest uptime.
func (r *Result) StageTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %-22s %8s %8s %8s\n", "stage", "at(s)", "step(s)", "uptime")
	var prev time.Duration
	for _, s := range r.Stages {
		up := "-"
		if s.Uptime >= 0 {
			up = fmt.Sprintf("%.2f", s.Uptime)
		}
		fmt.Fprintf(&b, "  %-22s %8.2f %8.2f %8s\n", s.Name, s.At.Seconds(), (s.At - prev).Seconds(), up)
		prev = s.At
	}
	if r.NetbootOK {
		if l, ok := r.FirstLine("NETBOOT-OK"); ok {
			fmt.Fprintf(&b, "  %-22s %8.2f %8.2f\n", "NETBOOT-OK", l.At.Seconds(), (l.At - prev).Seconds())
		}
	}
	fmt.Fprintf(&b, "  %-22s %8.2f\n", "qemu-exit", r.Elapsed.Seconds())
	return b.String()
}

var kvRE = regexp.MustCompile(`(\w+)=(\S*)`)

// event is a marker the dispatcher acts on.
type event struct{ marker, arg string }

// markerTokens start a marker. A line can hold several: the kernel resets
// the UART while iPXE's last output is still in flight, so "PXE-STAGE
// ipxe-downloaded" can lose its end and run into the initramfs's first line.
var markerTokens = []string{"PXE-STAGE ", "PXE-FAIL ", "PXE-WAIT ", "NETBOOT-OK", "CHECK ok ", "CHECK FAIL ", "CHECK XFAIL "}

// markerSegments cuts text at every marker token; text before the first is
// dropped (console noise such as "Booting from ROM..").
func markerSegments(text string) []string {
	var starts []int
	for _, tok := range markerTokens {
		for from := 0; ; {
			i := strings.Index(text[from:], tok)
			if i < 0 {
				break
			}
			starts = append(starts, from+i)
			from += i + len(tok)
		}
	}
	if len(starts) == 0 {
		return nil
	}
	slices.Sort(starts)
	segs := make([]string, 0, len(starts))
	for i, st := range starts {
		end := len(text)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		segs = append(segs, text[st:end])
	}
	return segs
}

// add records one console line and parses the markers in it.
func (r *Result) add(l Line) []event {
	r.Lines = append(r.Lines, l)
	if i := strings.Index(l.Text, "Kernel panic - not syncing: "); i >= 0 && r.Panic == "" {
		r.Panic = strings.TrimSpace(l.Text[i+len("Kernel panic - not syncing: "):])
	}
	var evs []event
	for _, seg := range markerSegments(l.Text) {
		if e, ok := r.parse(seg, l.At); ok {
			evs = append(evs, e)
		}
	}
	return evs
}

// parse handles one segment that starts with a marker token.
func (r *Result) parse(t string, at time.Duration) (event, bool) {
	switch {
	case strings.HasPrefix(t, "PXE-STAGE "):
		rest := strings.TrimSpace(strings.TrimPrefix(t, "PXE-STAGE "))
		name, detail, _ := strings.Cut(rest, " ")
		if name == "" {
			return event{}, false
		}
		s := Stage{Name: name, At: at, Uptime: -1}
		if strings.HasPrefix(detail, "uptime=") {
			u, d, _ := strings.Cut(strings.TrimPrefix(detail, "uptime="), " ")
			if f, err := strconv.ParseFloat(u, 64); err == nil {
				s.Uptime = f
			}
			detail = d
		}
		s.Detail = strings.TrimSpace(detail)
		r.Stages = append(r.Stages, s)
		return event{"PXE-STAGE", name}, true
	case strings.HasPrefix(t, "CHECK "):
		status, rest, _ := strings.Cut(strings.TrimPrefix(t, "CHECK "), " ")
		name, detail, _ := strings.Cut(strings.TrimSpace(rest), ":")
		name = strings.TrimSpace(name)
		r.Checks = append(r.Checks, CheckResult{Name: name, Status: status, Detail: strings.TrimSpace(detail), At: at})
		if !r.NetbootOK {
			switch status {
			case "ok":
				r.ChecksOK++
			case "FAIL":
				r.ChecksFailed++
			case "XFAIL":
				r.ChecksXFail++
			}
		}
		return event{"CHECK", name}, true
	case strings.HasPrefix(t, "NETBOOT-OK"):
		r.NetbootOK = true
		r.Marker = map[string]string{}
		for _, m := range kvRE.FindAllStringSubmatch(strings.TrimPrefix(t, "NETBOOT-OK"), -1) {
			r.Marker[m[1]] = m[2]
		}
		for key, dst := range map[string]*int{"checks_ok": &r.ChecksOK, "checks_failed": &r.ChecksFailed, "checks_xfail": &r.ChecksXFail} {
			if v, err := strconv.Atoi(r.Marker[key]); err == nil {
				*dst = v
			}
		}
		return event{"NETBOOT-OK", ""}, true
	case strings.HasPrefix(t, "PXE-FAIL "):
		r.Fail = strings.TrimSpace(strings.TrimPrefix(t, "PXE-FAIL "))
		return event{"PXE-FAIL", r.Fail}, true
	case strings.HasPrefix(t, "PXE-WAIT "):
		name := strings.Fields(strings.TrimPrefix(t, "PXE-WAIT "))
		if len(name) == 0 {
			return event{}, false
		}
		r.Waits = append(r.Waits, name[0])
		return event{"PXE-WAIT", name[0]}, true
	}
	return event{}, false
}

var escapeRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78cDEHM])`)

// cleanLine removes terminal escapes (SeaBIOS and iPXE colour and clear the
// screen) and carriage returns. Text around a carriage return is kept, so a
// marker is never lost to a progress redraw.
func cleanLine(b []byte) string {
	s := escapeRE.ReplaceAllString(string(b), "")
	return strings.TrimRight(strings.ReplaceAll(s, "\r", ""), " \t")
}
