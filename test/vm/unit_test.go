package vm

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func feed(lines ...string) *Result {
	r := &Result{}
	for i, l := range lines {
		r.add(Line{At: time.Duration(i) * time.Second, Text: cleanLine([]byte(l))})
	}
	return r
}

func TestResultParsesMarkers(t *testing.T) {
	r := feed(
		"SeaBIOS (version 1.16.2-debian-1.16.2-1)",
		"PXE-STAGE ipxe-script-start",
		"Booting from ROM..PXE-STAGE initrd-start uptime=2.67",
		"PXE-STAGE static-ip uptime=3.85 if=eth0 ip=10.99.0.10/24 gw= server=10.99.0.1",
		"CHECK ok   root-is-nfs3",
		"CHECK XFAIL hardlink-create: ln: /tmp/h: Input/output error",
		"CHECK FAIL chmod: mode 644",
		"PXE-WAIT restart",
		"CHECK maybe not-a-check",
		"NETBOOT-OK checks_ok=1 checks_failed=1 checks_xfail=1 uptime=8.52",
	)
	if got := len(r.Stages); got != 3 {
		t.Fatalf("stages = %d, want 3: %+v", got, r.Stages)
	}
	if s := r.Stages[0]; s.Name != "ipxe-script-start" || s.Uptime != -1 || s.At != time.Second {
		t.Errorf("iPXE stage = %+v", s)
	}
	if s := r.Stages[1]; s.Name != "initrd-start" || s.Uptime != 2.67 || s.Detail != "" {
		t.Errorf("stage after ROM text = %+v", s)
	}
	if s := r.Stages[2]; s.Detail != "if=eth0 ip=10.99.0.10/24 gw= server=10.99.0.1" {
		t.Errorf("stage detail = %q", s.Detail)
	}
	want := []CheckResult{
		{Name: "root-is-nfs3", Status: "ok", At: 4 * time.Second},
		{Name: "hardlink-create", Status: "XFAIL", Detail: "ln: /tmp/h: Input/output error", At: 5 * time.Second},
		{Name: "chmod", Status: "FAIL", Detail: "mode 644", At: 6 * time.Second},
	}
	if !slices.Equal(r.Checks, want) {
		t.Errorf("checks = %+v, want %+v", r.Checks, want)
	}
	if !slices.Equal(r.Waits, []string{"restart"}) {
		t.Errorf("waits = %v", r.Waits)
	}
	if !r.NetbootOK || r.ChecksOK != 1 || r.ChecksFailed != 1 || r.ChecksXFail != 1 || r.Marker["uptime"] != "8.52" {
		t.Errorf("marker: ok=%v %d/%d/%d %v", r.NetbootOK, r.ChecksOK, r.ChecksFailed, r.ChecksXFail, r.Marker)
	}
	if r.Passed() {
		t.Error("a result with a failed check passed")
	}
}

// The kernel resets the UART while iPXE's last line is in flight: its end
// is lost and the initramfs's first marker lands on the same line.
func TestResultSplitsRunTogetherMarkers(t *testing.T) {
	r := feed("PXE-STAGE ipxe-downloadePXE-STAGE initrd-start uptime=2.70",
		"[ 1.0] noise CHECK ok a NETBOOT-OK checks_ok=1 checks_failed=0")
	if len(r.Stages) != 2 || r.Stages[0].Name != "ipxe-downloade" || r.Stages[1].Name != "initrd-start" || r.Stages[1].Uptime != 2.7 {
		t.Errorf("stages = %+v", r.Stages)
	}
	if len(r.Checks) != 1 || r.Checks[0].Name != "a" || !r.NetbootOK || !r.Passed() {
		t.Errorf("checks %+v netboot_ok=%v", r.Checks, r.NetbootOK)
	}
}

func TestResultPassed(t *testing.T) {
	ok := func() *Result { return feed("CHECK ok a", "NETBOOT-OK checks_ok=1 checks_failed=0") }
	for _, tc := range []struct {
		name string
		mod  func(*Result)
		want bool
	}{
		{"clean", func(*Result) {}, true},
		{"timed out", func(r *Result) { r.TimedOut = true }, false},
		{"killed", func(r *Result) { r.ExitCode = -1 }, false},
		{"error", func(r *Result) { r.Err = errors.New("x") }, false},
		{"no marker", func(r *Result) { r.NetbootOK = false }, false},
		{"stopped by condition", func(r *Result) { r.NetbootOK = false; r.Stopped = true; r.ExitCode = -1 }, true},
		{"marker hides a FAIL line", func(r *Result) { r.Checks = append(r.Checks, CheckResult{Name: "b", Status: "FAIL"}) }, false},
	} {
		r := ok()
		tc.mod(r)
		if got := r.Passed(); got != tc.want {
			t.Errorf("%s: Passed() = %v, want %v", tc.name, got, tc.want)
		}
	}
	r := feed("[    0.4] Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug")
	if !strings.HasPrefix(r.Panic, "IO-APIC + timer") || r.Passed() || !strings.Contains(r.Summary(), "kernel panic: IO-APIC") {
		t.Errorf("panic not reported: %q\n%s", r.Panic, r.Summary())
	}
	r = feed("PXE-FAIL nfs mount 10.99.0.1:/x")
	if r.Fail != "nfs mount 10.99.0.1:/x" || r.Passed() {
		t.Errorf("PXE-FAIL: %+v", r)
	}
	if !strings.Contains(r.Summary(), "PXE-FAIL nfs mount") || !strings.Contains(r.Tail(5), "PXE-FAIL") {
		t.Errorf("summary/tail miss the failure:\n%s\n%s", r.Summary(), r.Tail(5))
	}
}

func TestCleanLine(t *testing.T) {
	for in, want := range map[string]string{
		"\x1b[2J\x1b[01;01HSeaBIOS\r":          "SeaBIOS",
		"\x1b[0mPXE-STAGE x uptime=1\r":        "PXE-STAGE x uptime=1",
		"Configuring... 42%\rok  PXE-STAGE y ": "Configuring... 42%ok  PXE-STAGE y",
		"\x1bcplain":                           "plain",
	} {
		if got := cleanLine([]byte(in)); got != want {
			t.Errorf("cleanLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKernelArgs(t *testing.T) {
	for _, tc := range []struct {
		args KernelArgs
		want string
	}{
		{KernelArgs{}, "console=ttyS0 panic=-1 no_timer_check quiet"},
		{KernelArgs{NFSRoot: "10.99.0.1:/nodes/a", NFSPort: 20490, NFSOpts: "soft", Verbose: true, Extra: []string{"pxedebug"}},
			"console=ttyS0 panic=-1 no_timer_check nfsroot=10.99.0.1:/nodes/a nfsport=20490 nfsopts=soft pxedebug"},
		{KernelArgs{Static: netip.MustParsePrefix("10.99.0.10/24"), Server: netip.MustParseAddr("10.99.0.1"), Hostname: "n1"},
			"console=ttyS0 panic=-1 no_timer_check quiet ip=10.99.0.10:10.99.0.1::255.255.255.0:n1::off"},
		{KernelArgs{Static: netip.MustParsePrefix("10.99.0.10/20"), Gateway: netip.MustParseAddr("10.99.0.254")},
			"console=ttyS0 panic=-1 no_timer_check quiet ip=10.99.0.10::10.99.0.254:255.255.240.0:::off"},
	} {
		if got := tc.args.String(); got != tc.want {
			t.Errorf("%+v:\n got %s\nwant %s", tc.args, got, tc.want)
		}
	}
	s := IPXEScript("vmlinuz", "initrd.img", KernelArgs{NFSPort: 2049})
	if !strings.HasPrefix(s, "#!ipxe\n") || !strings.Contains(s, "kernel vmlinuz console=ttyS0 panic=-1 no_timer_check quiet nfsport=2049\ninitrd initrd.img\n") {
		t.Errorf("boot.ipxe:\n%s", s)
	}
}

func TestQEMUArgs(t *testing.T) {
	if _, err := QEMUArgs(Machine{Tap: "tap0"}); err == nil {
		t.Error("direct boot without kernel accepted")
	}
	if _, err := QEMUArgs(Machine{Mode: PXEBoot}); err == nil {
		t.Error("machine without tap accepted")
	}
	if _, err := QEMUArgs(Machine{Mode: PXEBoot, Tap: "tap0", MAC: "nope"}); err == nil {
		t.Error("bad MAC accepted")
	}
	t.Setenv(AccelEnv, "")
	direct, err := QEMUArgs(Machine{Name: "n1", Tap: "tap1", Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(direct, " ")
	for _, want := range []string{"-accel tcg", "-m 512", "-smp 1", "-no-reboot", "-serial stdio",
		"ifname=tap1,", "virtio-net-pci,netdev=n0,mac=" + MACFor("n1") + ",romfile=", "-kernel /k -initrd /i -append console=ttyS0"} {
		if !strings.Contains(got, want) {
			t.Errorf("direct args miss %q:\n%s", want, got)
		}
	}
	pxe, _ := QEMUArgs(Machine{Mode: PXEBoot, Tap: "tap0", MAC: "52:54:00:12:34:56", NIC: "e1000"})
	got = strings.Join(pxe, " ")
	if !strings.Contains(got, "-boot n -device e1000,netdev=n0,mac=52:54:00:12:34:56") || strings.Contains(got, "romfile") || strings.Contains(got, "-kernel") {
		t.Errorf("pxe args: %s", got)
	}
	if MACFor("a") == MACFor("b") || !strings.HasPrefix(MACFor("a"), "52:54:00:") {
		t.Errorf("MACFor: %s %s", MACFor("a"), MACFor("b"))
	}
}

func TestInitScript(t *testing.T) {
	if _, err := InitScript(RootfsSpec{Checks: []Check{{Name: "two words"}}}); err == nil {
		t.Error("check name with a space accepted")
	}
	s, err := InitScript(RootfsSpec{Checks: append(StandardChecks(), Check{Name: "quote", Script: `test "it's" = "it's"`}), Script: "wait_host x"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, `chk quote 'test "it'\''s" = "it'\''s"'`) || !strings.Contains(s, "soft hardlink-create ") ||
		!strings.HasSuffix(s, "wait_host x\nfinish\n") {
		t.Errorf("init script:\n%s", s)
	}
	if bb, err := exec.LookPath("busybox"); err == nil {
		f := filepath.Join(t.TempDir(), "init")
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bb, "sh", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("generated init does not parse: %v\n%s", err, out)
		}
	}
}

func TestBuildRootfs(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox")
	}
	dir := filepath.Join(t.TempDir(), "root")
	if err := BuildRootfs(dir, RootfsSpec{Hostname: "h1"}); err != nil {
		t.Fatal(err)
	}
	// Building again over an existing tree works (tests reuse image dirs).
	if err := BuildRootfs(dir, RootfsSpec{Hostname: "h2"}); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin", "sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("tmp mode %v, %v", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(dir, "sbin", "init")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("init: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc", "hostname")); string(b) != "h2\n" {
		t.Errorf("hostname %q", b)
	}
	for _, d := range []string{"dev", "proc", "sys"} {
		if st, err := os.Stat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
}

// Concurrent builders of one cache entry: one builds, the others wait and
// see the complete artefact; a failed build publishes nothing.
func TestEnsureBuildsOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "thing")
	var builds atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ensure(path, func(tmp string) error {
				builds.Add(1)
				time.Sleep(20 * time.Millisecond)
				return os.WriteFile(tmp, []byte("done"), 0o644)
			})
			if err != nil {
				t.Error(err)
				return
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != "done" {
				t.Errorf("read %q, %v", b, err)
			}
		}()
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times", n)
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad+".tmp-1-stale", []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ensure(bad, func(tmp string) error {
		_ = os.WriteFile(tmp, []byte("half"), 0o644)
		return errors.New("boom")
	}); err == nil {
		t.Error("failed build reported success")
	}
	if left, _ := filepath.Glob(bad + "*"); !slices.Equal(left, []string{bad + ".lock"}) {
		t.Errorf("left behind: %v", left)
	}
}
