package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeBinfmt stands in for /proc/sys/fs/binfmt_misc, behaving as the
// kernel does for the operations image exec uses.
type fakeBinfmt struct {
	mountErr, registerErr error
	mounted               bool
	entries               map[string]string
	registered, enabled   []string
}

func (f *fakeBinfmt) Mount() error {
	if f.mountErr != nil {
		return f.mountErr
	}
	f.mounted = true
	return nil
}

func (f *fakeBinfmt) Entry(name string) (string, error) {
	s, ok := f.entries[name]
	if !f.mounted || !ok {
		return "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return s, nil
}

func (f *fakeBinfmt) Register(line string) error {
	if f.registerErr != nil {
		return f.registerErr
	}
	h, err := parseRegisterLine(line)
	if err != nil {
		return unix.EINVAL
	}
	if _, ok := f.entries[h.name]; ok {
		return fs.ErrExist
	}
	f.entries[h.name] = fmt.Sprintf("enabled\ninterpreter %s\nflags: %s\noffset 0\n", h.interpreter, h.flags)
	f.registered = append(f.registered, line)
	return nil
}

func (f *fakeBinfmt) Enable(name string) error {
	f.entries[name] = strings.Replace(f.entries[name], "disabled", "enabled", 1)
	f.enabled = append(f.enabled, name)
	return nil
}

func TestEmulationEnsure(t *testing.T) {
	// An architecture this host cannot run natively.
	foreign, q := "arm64", "aarch64"
	if runsNatively(foreign) {
		foreign, q = "amd64", "x86_64"
	}
	name := "qemu-" + q
	dir := t.TempDir()
	interp := filepath.Join(dir, "qemu-"+q+"-static")
	if err := os.WriteFile(interp, []byte("emulator"), 0o755); err != nil {
		t.Fatal(err)
	}
	etc, usr, binfmts := filepath.Join(dir, "etc"), filepath.Join(dir, "usr"), filepath.Join(dir, "binfmts")
	magic := `\x7f\x45\x4c\x46\x02\x01\x01\x00`
	mask := `\xff\xff\xff\xff\xff\xff\xff\x00`
	debLine := fmt.Sprintf(":%s:M::%s:%s:%s:OPF", name, magic, mask, interp)
	entry := func(state, flags string) map[string]string {
		return map[string]string{name: fmt.Sprintf("%s\ninterpreter %s\nflags: %s\noffset 0\n", state, interp, flags)}
	}
	type files map[string]string
	for _, tc := range []struct {
		name        string
		arch        string
		misc        *fakeBinfmt
		conf        files // path relative to dir → content
		wantErr     string
		wantReg     string // the line registered, "" for none
		wantEnabled bool
	}{
		{name: "native", arch: hostArch(), misc: &fakeBinfmt{mountErr: errors.New("must not mount")}},
		{name: "no /bin/sh", arch: "", misc: &fakeBinfmt{mountErr: errors.New("must not mount")}},
		{name: "no emulator exists", arch: "mips64el", misc: &fakeBinfmt{}, wantErr: "no qemu-user emulator for mips64el"},
		{name: "registered with F", arch: foreign, misc: &fakeBinfmt{entries: entry("enabled", "POF")}},
		{name: "disabled is enabled", arch: foreign, misc: &fakeBinfmt{entries: entry("disabled", "POF")}, wantEnabled: true},
		{name: "registered without F", arch: foreign, misc: &fakeBinfmt{entries: entry("enabled", "OC")},
			wantErr: "lacks the F flag"},
		{name: "binfmt_misc cannot be mounted", arch: foreign, misc: &fakeBinfmt{mountErr: unix.EPERM},
			wantErr: "operation not permitted"},
		{name: "registered from binfmt.d", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}},
			conf:    files{"usr/" + name + ".conf": "# qemu-user-static\n" + debLine + "\n"},
			wantReg: debLine},
		{name: "etc overrides usr", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}},
			conf:    files{"usr/" + name + ".conf": debLine, "etc/" + name + ".conf": strings.Replace(debLine, ":OPF", ":F", 1)},
			wantReg: strings.Replace(debLine, ":OPF", ":F", 1)},
		{name: "F flag added", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}},
			conf:    files{"usr/" + name + ".conf": strings.Replace(debLine, ":OPF", ":OC", 1)},
			wantReg: strings.Replace(debLine, ":OPF", ":OCF", 1)},
		{name: "flags field added", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}},
			conf:    files{"usr/" + name + ".conf": strings.TrimSuffix(debLine, ":OPF")},
			wantReg: strings.Replace(debLine, ":OPF", ":F", 1)},
		{name: "from update-binfmts format", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}},
			conf: files{"binfmts/" + name: fmt.Sprintf("package qemu-user-static\ninterpreter %s\nmagic %s\noffset 0\nmask %s\ncredentials no\nfix_binary yes\npreserve yes\n",
				interp, magic, mask)},
			wantReg: fmt.Sprintf(":%s:M:0:%s:%s:%s:FP", name, magic, mask, interp)},
		{name: "qemu-user-static missing", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}},
			wantErr: "needs Debian's qemu-user-static (apt-get install qemu-user-static)"},
		{name: "interpreter removed", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}},
			conf:    files{"usr/" + name + ".conf": strings.Replace(debLine, interp, interp+"-gone", 1)},
			wantErr: "reinstall Debian's qemu-user-static"},
		{name: "register refused", arch: foreign, misc: &fakeBinfmt{entries: map[string]string{}, registerErr: unix.EPERM},
			conf:    files{"usr/" + name + ".conf": debLine},
			wantErr: "register binfmt handler " + name},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range []string{etc, usr, binfmts} {
				os.RemoveAll(d)
				os.MkdirAll(d, 0o755)
			}
			for p, c := range tc.conf {
				if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			e := &emulation{misc: tc.misc, confDirs: []string{etc, usr}, binfmtsDir: binfmts, log: slog.New(slog.DiscardHandler)}
			err := e.ensure(tc.arch)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrForeignArch) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ensure(%q) = %v, want ErrForeignArch with %q", tc.arch, err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("ensure(%q): %v", tc.arch, err)
			}
			var reg string
			if len(tc.misc.registered) > 0 {
				reg = strings.Join(tc.misc.registered, " | ")
			}
			if reg != tc.wantReg {
				t.Errorf("registered %q, want %q", reg, tc.wantReg)
			}
			if got := len(tc.misc.enabled) > 0; got != tc.wantEnabled {
				t.Errorf("enabled a handler: %v, want %v", got, tc.wantEnabled)
			}
		})
	}
}

// TestExecForeignArchImage runs a command in an arm64 image: a root whose
// /bin/sh is a static arm64 Go program (testdata/archprobe), so no network
// and no debootstrap of a foreign arch are needed.
func TestExecForeignArchImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot, mounts, binfmt_misc registration)")
	}
	if testing.Short() {
		t.Skip("builds the Go standard library for arm64 on its first run")
	}
	if hostArch() != "amd64" {
		t.Skipf("exercises arm64 emulation on an amd64 host; this host is %s", hostArch())
	}
	if _, err := os.Stat("/usr/bin/qemu-aarch64-static"); err != nil {
		t.Skip("qemu-user-static not installed (Debian: apt-get install qemu-user-static, or make deps)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	const handler = "/proc/sys/fs/binfmt_misc/qemu-aarch64"
	if _, err := os.Stat(handler); err == nil {
		t.Log("qemu-aarch64 binfmt handler already registered: exec uses it")
	} else {
		t.Log("qemu-aarch64 binfmt handler not registered: exec registers it")
	}

	tree := t.TempDir()
	for _, d := range []string{"usr/bin", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(tree, "bin")); err != nil {
		t.Fatal(err)
	}
	build := exec.Command(goTool, "build", "-o", filepath.Join(tree, "usr/bin/sh"), "./testdata/archprobe")
	build.Env = append(os.Environ(), "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build arm64 probe: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("ID=pictl-test\nVERSION_ID=\"1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	s := newStore(t)
	ctx := context.Background()
	m, err := s.Import(ctx, "arm64", tree, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != "arm64" {
		t.Fatalf("image arch %q, want arm64", m.Arch)
	}

	var out bytes.Buffer
	if err := s.Exec(ctx, "arm64", []string{"sh", "/root/by-exec"}, ExecOptions{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("exec: %v\n%s", err, out.String())
	}
	t.Logf("exec output:\n%s", out.String())
	for _, want := range []string{"goarch arm64\n", "machine aarch64\n", "proc mounted\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if b, err := os.ReadFile(filepath.Join(m.RootDir, "root/by-exec")); err != nil || string(b) != "written by arm64\n" {
		t.Errorf("file written by exec: %q, %v", b, err)
	}
	if mnt := mountsUnder(t, s.Dir); len(mnt) > 0 {
		t.Errorf("mounts left: %v", mnt)
	}
	b, err := os.ReadFile(handler)
	if err != nil {
		t.Fatal(err)
	}
	if h := parseBinfmtEntry(string(b)); !h.enabled || !strings.Contains(h.flags, "F") {
		t.Errorf("handler after exec: %q", b)
	}
	// The F flag means no emulator was copied into the image.
	filepath.WalkDir(m.RootDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "qemu") {
			t.Errorf("emulator left in the image: %s", p)
		}
		return nil
	})

	var ee *exec.ExitError
	if err := s.Exec(ctx, "arm64", []string{"sh", "-exit", "3"}, ExecOptions{NoRefresh: true}); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit status through the emulator: %v", err)
	}
	if mnt := mountsUnder(t, s.Dir); len(mnt) > 0 {
		t.Errorf("mounts left after failure: %v", mnt)
	}
}
