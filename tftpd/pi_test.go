package tftpd

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// piStep is one file a simulated Pi asks for. want nil = the Pi expects
// "not found" (a probe); probe = it first sends a tsize-only request and
// aborts after the OACK, as the bootloader does before every real file.
type piStep struct {
	name  string
	want  []byte
	probe bool
}

// runPi plays steps against the server; fetch holds the options of the real
// requests, probe how the tsize probes go. It returns how many probes and
// missing files it saw.
func runPi(t *testing.T, c *rawClient, steps []piStep, fetch []string, probe rawOpts, dupACKs bool) (probes, missing int) {
	t.Helper()
	for _, s := range steps {
		if s.probe {
			res, err := c.get(s.name, probe)
			if err != nil {
				t.Fatalf("probe %s: %v", s.name, err)
			}
			if s.want == nil {
				if res.errCode != 1 {
					t.Fatalf("probe %s: got %+v, want ERROR 1", s.name, res)
				}
			} else if res.oack["tsize"] != strconv.Itoa(len(s.want)) {
				t.Fatalf("probe %s: OACK %v, want tsize %d", s.name, res.oack, len(s.want))
			}
			probes++
		}
		res, err := c.get(s.name, rawOpts{options: fetch, duplicateACKs: dupACKs})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want == nil {
			if res.errCode != 1 || res.errMsg != "file not found" {
				t.Fatalf("%s: got %+v, want ERROR 1 file not found", s.name, res)
			}
			missing++
			continue
		}
		if res.errCode != -1 || !bytes.Equal(res.data, s.want) {
			t.Fatalf("%s: got %d bytes (error %d %q), want %d bytes", s.name, len(res.data), res.errCode, res.errMsg, len(s.want))
		}
		if strings.Contains(strings.Join(fetch, " "), "blksize 1024") && res.oack["blksize"] != "1024" {
			t.Fatalf("%s: blksize not acknowledged: %v", s.name, res.oack)
		}
	}
	return probes, missing
}

// The Pi 3's bootcode.bin probes with tsize alone, acknowledges the OACK and
// aborts on the first block (firmware#1700's capture); the Pi 4 EEPROM asks
// tsize and blksize 1024 and aborts in answer to the OACK (PROTOCOLS.md).
var (
	pi3Probe = rawOpts{options: []string{"tsize", "0"}, abortAfterBlock1: true}
	pi4Probe = rawOpts{options: []string{"tsize", "0", "blksize", "1024"}, abortAfterOACK: true}
)

func prefixed(prefix string, steps []piStep) []piStep {
	out := make([]piStep, len(steps))
	for i, s := range steps {
		s.name = prefix + s.name
		out[i] = s
	}
	return out
}

func pi3Config() []byte {
	return []byte(harnessConfigTxt + "\n[all]\n# pictl: settings of node pi3\nenable_uart=1\n")
}

const pi3Cmdline = "console=serial0,115200 console=tty1 root=/dev/nfs nfsroot=127.0.0.1:/nodes/pi3,vers=3,tcp,port=2049,mountport=2049,nolock rw ip=dhcp rootwait quiet cfg80211.ieee80211_regdom=GB net.ifnames=0 systemd.unit=pictl-web.target\n"

// The Pi 3 sequence of PROTOCOLS.md: the boot ROM fetches bootcode.bin with a
// plain request, bootsig.bin must be missing, then bootcode.bin probes
// <serial>/start.elf; found, so every later request keeps the prefix.
func pi3Sequence(h *harness, serial string) []piStep {
	f := h.piFiles
	return append([]piStep{
		{name: "bootcode.bin", want: f["bootcode.bin"]},
		{name: "bootsig.bin"},
	}, prefixed(serial+"/", []piStep{
		{name: "start.elf", want: f["start.elf"], probe: true},
		{name: "autoboot.txt", probe: true},
		{name: "config.txt", want: pi3Config(), probe: true},
		{name: "recovery.elf", probe: true},
		{name: "start.elf", want: f["start.elf"], probe: true},
		{name: "fixup.dat", want: f["fixup.dat"], probe: true},
		{name: "config.txt", want: pi3Config(), probe: true},
		{name: "dt-blob.bin", probe: true},
		{name: "bootcfg.txt", probe: true},
		{name: "bcm2710-rpi-3-b.dtb", want: f["bcm2710-rpi-3-b.dtb"], probe: true},
		{name: "overlays/overlay_map.dtb", want: f["overlays/overlay_map.dtb"], probe: true},
		{name: "config.txt", want: pi3Config(), probe: true},
		{name: "overlays/vc4-kms-v3d.dtbo", want: f["overlays/vc4-kms-v3d.dtbo"], probe: true},
		{name: "cmdline.txt", want: []byte(pi3Cmdline), probe: true},
		{name: "armstub8.bin", probe: true},
		{name: "kernel8.img", want: f["kernel8.img"], probe: true},
	})...)
}

func TestPi3BootSequence(t *testing.T) {
	h := newHarness(t, nil)
	c := h.client("127.0.0.3")
	// 512-byte blocks: the Pi 3 sends no blksize.
	probes, missing := runPi(t, c, pi3Sequence(h, "0a1b2c3d"), nil, pi3Probe, false)
	h.settle()

	if got, want := h.count(OutcomeEarlyAbort), probes-countMissingProbes(pi3Sequence(h, "")); got != want {
		t.Errorf("early_abort = %d, want %d", got, want)
	}
	if got := h.count(OutcomeNotFound); got != missing+countMissingProbes(pi3Sequence(h, "")) {
		t.Errorf("not_found = %d", got)
	}
	for _, o := range []Outcome{OutcomeTimeout, OutcomeClientAbort, OutcomeError, OutcomeUnknownClient} {
		if n := h.count(o); n != 0 {
			t.Errorf("%s = %d, want 0", o, n)
		}
	}
	if strings.Contains(h.logs.String(), "level=WARN") {
		t.Errorf("warnings logged for a clean boot:\n%s", h.logs.String())
	}
	stages, unknown := h.rec.snapshot()
	if len(unknown) != 0 {
		t.Errorf("unknown clients recorded: %+v", unknown)
	}
	if last := latest(stages); last.Node != "pi3" || last.Stage != StageKernel || last.File != "kernel8.img" || last.Outcome != OutcomeOK {
		t.Errorf("last stage %+v", last)
	}
	for _, ev := range stages {
		if ev.Outcome != OutcomeOK {
			t.Errorf("stage recorded for %s with outcome %s (probes must not count)", ev.File, ev.Outcome)
		}
	}
}

// latest is the stage of the transfer that ended last. Transfers end on the
// server a little after the client has moved on, so recording order may
// differ from request order by a file; the big file at the end of a
// sequence ends last.
func latest(stages []StageEvent) StageEvent {
	var last StageEvent
	for _, ev := range stages {
		if !ev.At.Before(last.At) {
			last = ev
		}
	}
	return last
}

func countMissingProbes(steps []piStep) int {
	n := 0
	for _, s := range steps {
		if s.probe && s.want == nil {
			n++
		}
	}
	return n
}

// A Pi 3 known only by its address: its serial prefix is unknown, so
// <serial>/start.elf is missing and the Pi drops the prefix for the rest.
func TestPi3DropsUnknownPrefix(t *testing.T) {
	h := newHarness(t, nil)
	c := h.client("127.0.0.13")
	f := h.piFiles
	steps := []piStep{
		{name: "bootcode.bin", want: f["bootcode.bin"]},
		{name: "bootsig.bin"},
		{name: "5eed5eed/start.elf", probe: true},
		{name: "autoboot.txt", probe: true},
		{name: "config.txt", want: []byte(harnessConfigTxt), probe: true},
		{name: "start.elf", want: f["start.elf"], probe: true},
		{name: "fixup.dat", want: f["fixup.dat"], probe: true},
		{name: "kernel8.img", want: f["kernel8.img"], probe: true},
	}
	runPi(t, c, steps, nil, pi3Probe, false)
	h.settle()
	_, unknown := h.rec.snapshot()
	if len(unknown) == 0 || unknown[0].Serial != "5eed5eed" || unknown[0].IP.String() != "127.0.0.13" {
		t.Errorf("unknown serial not recorded with its address: %+v", unknown)
	}
}

// The Pi 4 sequence: blksize 1024 and tsize on every request, probes first,
// the self-update files missing; every block acknowledged twice.
func TestPi4BootSequence(t *testing.T) {
	h := newHarness(t, nil)
	c := h.client("127.0.0.4")
	f := h.piFiles
	cfg := []byte(harnessConfigTxt)
	cmdline := []byte("console=serial0,115200 console=tty1 root=/dev/nfs nfsroot=127.0.0.1:/nodes/pi4,vers=3,tcp,port=2049,mountport=2049,nolock rw ip=dhcp rootwait quiet cfg80211.ieee80211_regdom=GB net.ifnames=0\n")
	steps := prefixed("d2e4f6a8/", []piStep{
		{name: "start4.elf", want: f["start4.elf"], probe: true},
		{name: "config.txt", want: cfg, probe: true},
		{name: "recovery.elf", probe: true},
		{name: "start4.elf", want: f["start4.elf"], probe: true},
		{name: "fixup4.dat", want: f["fixup4.dat"], probe: true},
		{name: "config.txt", want: cfg, probe: true},
		{name: "dt-blob.bin", probe: true},
		{name: "bcm2711-rpi-4-b.dtb", want: f["bcm2711-rpi-4-b.dtb"], probe: true},
		{name: "overlays/overlay_map.dtb", want: f["overlays/overlay_map.dtb"], probe: true},
		{name: "overlays/vc4-kms-v3d.dtbo", want: f["overlays/vc4-kms-v3d.dtbo"], probe: true},
		{name: "cmdline.txt", want: cmdline, probe: true},
		{name: "armstub8-gic.bin", probe: true},
		{name: "kernel8.img", want: f["kernel8.img"], probe: true},
		{name: "initramfs8", want: f["initramfs8"], probe: true},
		{name: "exact-1024.bin", want: f["exact-1024.bin"], probe: true}, // ends with an empty block
		{name: "empty.bin", want: []byte{}},
		{name: "pieeprom.sig", probe: true},
		{name: "pieeprom.upd", probe: true},
	})
	probes, _ := runPi(t, c, steps, []string{"tsize", "0", "blksize", "1024"}, pi4Probe, true)
	h.settle()
	if got := h.count(OutcomeEarlyAbort); got != probes-countMissingProbes(steps) {
		t.Errorf("early_abort = %d", got)
	}
	for _, o := range []Outcome{OutcomeTimeout, OutcomeClientAbort, OutcomeError} {
		if n := h.count(o); n != 0 {
			t.Errorf("%s = %d, want 0", o, n)
		}
	}
	stages, _ := h.rec.snapshot()
	if last := latest(stages); last.Node != "pi4" || last.Stage != StageInitrd {
		t.Errorf("last stage %+v", last)
	}
}

// A Pi 4 whose node has netboot off finds no start4.elf and moves on to its
// next boot mode; it is a known node, not a discovered one.
func TestNetbootOffPi(t *testing.T) {
	h := newHarness(t, nil)
	c := h.client("127.0.0.6")
	runPi(t, c, []piStep{
		{name: "0ff0ff00/start4.elf", probe: true},
		{name: "start4.elf", probe: true},
		{name: "config.txt", probe: true},
	}, nil, pi4Probe, false)
	h.settle()
	if _, unknown := h.rec.snapshot(); len(unknown) != 0 {
		t.Errorf("netboot-off node recorded as unknown: %+v", unknown)
	}
	if got := h.count(OutcomeNetbootOff); got != 6 {
		t.Errorf("netboot_off = %d, want 6", got)
	}
}
