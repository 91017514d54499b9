package vm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Check is one guest-side test run by the rootfs's /sbin/init. Script is
// shell evaluated in a subshell (the init's functions and variables are
// visible, its changes are not kept); exit status 0 passes. A Soft check documents a
// known limitation: its failure is reported as XFAIL and not counted.
type Check struct {
	Name   string // one word: letters, digits, '-', '_', '.'
	Script string
	Soft   bool
}

// RootfsSpec describes the busybox root filesystem BuildRootfs writes.
type RootfsSpec struct {
	// Busybox is the static busybox binary; default /bin/busybox.
	Busybox string
	// Hostname goes to /etc/hostname; default netboot-guest.
	Hostname string
	// Checks run in order after the userspace stage marker.
	Checks []Check
	// Script is shell run after the checks and before the final marker. It
	// may use the functions of the init prelude (see InitScript).
	Script string
	// Hold keeps the guest running after the final marker instead of
	// powering off (for demos; a test then ends QEMU with StopWhen or Kill).
	Hold bool
}

// BuildRootfs writes a minimal busybox root filesystem into dir (created if
// needed; existing entries of the same names are replaced): /bin with
// busybox and a relative symlink per applet, /sbin/init running the spec's
// checks, empty /dev /proc /sys (the initramfs moves its mounts there),
// /run (init mounts a tmpfs there and continues from a copy of itself and
// busybox in RAM), /tmp (1777) and a few /etc files. Run it as root so files are owned by
// 0:0, which an NFS server passes through to the guest.
func BuildRootfs(dir string, spec RootfsSpec) error {
	bb := spec.Busybox
	if bb == "" {
		bb = "/bin/busybox"
	}
	host := spec.Hostname
	if host == "" {
		host = "netboot-guest"
	}
	init, err := InitScript(spec)
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "run", "tmp", "root", "var/log", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777|os.ModeSticky); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	sum, err := copyExecutable(bb, filepath.Join(dir, "bin", "busybox"))
	if err != nil {
		return fmt.Errorf("rootfs: busybox: %w", err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("rootfs: %s --list: %w", bb, err)
	}
	applets := strings.Fields(string(out))
	links := map[string]string{
		"sbin/poweroff": "../bin/busybox",
		// One absolute link on purpose: how a server returns its target is
		// part of what the guests check (go-billy's chroot rewrites it).
		"usr/bin/true": "/bin/busybox",
	}
	for _, a := range applets {
		if a != "busybox" {
			links["bin/"+a] = "busybox"
		}
	}
	for name, target := range links {
		p := filepath.Join(dir, name)
		_ = os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	binEntries, err := os.ReadDir(filepath.Join(dir, "bin"))
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	files := []struct {
		name, content string
		mode          os.FileMode
	}{
		{"etc/hostname", host + "\n", 0o644},
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644},
		{"etc/group", "root:x:0:\n", 0o644},
		{"etc/bin.count", fmt.Sprintf("%d\n", len(binEntries)), 0o644},
		{"etc/busybox.sha256", sum + "\n", 0o644},
		{"sbin/init", init, 0o755},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	return nil
}

var checkNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// InitScript returns the /sbin/init BuildRootfs writes. Its prelude gives
// the checks and Script these shell functions and variables:
//
//	st NAME [DETAIL]     print "PXE-STAGE NAME uptime=… DETAIL"
//	chk NAME 'SCRIPT'    run a check: "CHECK ok NAME" or "CHECK FAIL NAME: output"
//	soft NAME 'SCRIPT'   like chk, but a failure prints "CHECK XFAIL NAME: …"
//	wait_host NAME       print "PXE-WAIT NAME", block until the harness answers
//	                     on the console (after Machine.OnWait returned); status
//	                     0 for PXE-GO, 1 for PXE-ABORT
//	nfs_mount EXPORT DIR [OPTS]   mount another export of the root's server
//	                     with the root's options (nolock, port=, mountport=)
//	finish               print the final marker and power off (called at the
//	                     end; with RootfsSpec.Hold it keeps running instead)
//	$PXE_IF $PXE_IP $PXE_SERVER $PXE_NFS_SERVER $PXE_NFS_EXPORT $PXE_NFS_OPTS
//	$PXE_ADDR_MODE       exported by the initramfs (static or dhcp)
//
// The script re-executes itself from a tmpfs on /run with a RAM copy of
// busybox, so a broken NFS root fails checks instead of killing PID 1 (with
// a stale root handle every path lookup fails, /proc and /run included, but
// the script, builtins and the console keep working).
// Debian's busybox runs applets in-process (standalone shell): a bare "ls"
// runs from RAM and reads NFS; call /bin/x by path to exec from NFS.
//
// The final marker is "NETBOOT-OK checks_ok=N checks_failed=M checks_xfail=K
// uptime=U", then `poweroff -f` ends QEMU (-no-reboot).
func InitScript(spec RootfsSpec) (string, error) {
	var b strings.Builder
	b.WriteString(initPrelude)
	for _, c := range spec.Checks {
		if !checkNameRE.MatchString(c.Name) {
			return "", fmt.Errorf("check name %q: want one word of [A-Za-z0-9_.-]", c.Name)
		}
		fn := "chk"
		if c.Soft {
			fn = "soft"
		}
		fmt.Fprintf(&b, "%s %s %s\n", fn, c.Name, shellQuote(c.Script))
	}
	if spec.Script != "" {
		b.WriteString("# --- test script\n")
		b.WriteString(spec.Script)
		b.WriteString("\n")
	}
	if spec.Hold {
		b.WriteString("HOLD=1\n")
	}
	b.WriteString("finish\n")
	return b.String(), nil
}

const initPrelude = `#!/bin/sh
# PID 1 on the NFS root, generated by github.com/pictl/pictl/test/vm:
# run the test's checks, print the markers the harness parses, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# Go on from RAM: ash reads its script as it runs, so with the script on a
# root whose server broke (stale handles after a restart) PID 1 would die
# mid-line ("unterminated quoted string") and the kernel panic without a
# word; from RAM the checks report the breakage and the marker still comes.
if [ -z "${PXE_INIT_RAM:-}" ] && [ -d /run ] && mount -t tmpfs -o size=32m,mode=755 pxe-run /run; then
  cp /bin/busybox /run/busybox && cp "$0" /run/init && PXE_INIT_RAM=1 exec /run/busybox sh /run/init
  echo "init: could not re-run from RAM, staying on NFS"
fi
BB=
[ -n "${PXE_INIT_RAM:-}" ] && BB=/run/busybox
st() { read up _ < /proc/uptime; echo "PXE-STAGE $1 uptime=$up${2:+ $2}"; }
st userspace "mode=${PXE_ADDR_MODE:-?} ip=${PXE_IP:-?}"
[ -f /etc/hostname ] && $BB hostname "$($BB cat /etc/hostname)"
ok=0; bad=0; xf=0
# Output is kept in a variable, trimmed with shell expansions only: when the
# root is broken no path can be resolved, not even /run's or /proc's.
NL='
'
_out() { _o=${_o//$NL/ }; echo "${_o:0:400}"; }
chk() { if _o=$( (eval "$2") 2>&1 ); then ok=$((ok+1)); echo "CHECK ok $1"; else bad=$((bad+1)); echo "CHECK FAIL $1: $(_out)"; fi; }
soft() { if _o=$( (eval "$2") 2>&1 ); then ok=$((ok+1)); echo "CHECK ok $1"; else xf=$((xf+1)); echo "CHECK XFAIL $1: $(_out)"; fi; }
wait_host() {
  $BB stty -echo 2>/dev/null
  echo "PXE-WAIT $1"
  while read -r _verb _name; do
    [ "$_name" = "$1" ] || continue
    case "$_verb" in PXE-GO) return 0 ;; PXE-ABORT) return 1 ;; esac
  done
  return 1
}
nfs_mount() { $BB mount -t nfs -o "${3:-$PXE_NFS_OPTS}" "$PXE_NFS_SERVER:$1" "$2"; }
finish() {
  read up _ < /proc/uptime
  echo "NETBOOT-OK checks_ok=$ok checks_failed=$bad checks_xfail=$xf uptime=$up"
  $BB sync
  if [ -n "${HOLD:-}" ]; then
    echo "PXE-STAGE holding"
    while :; do $BB sleep 3600; done
  fi
  $BB poweroff -f
}
# --- checks
`

// shellQuote quotes s for sh as one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// StandardChecks are the recipe's filesystem checks of an NFS root built by
// BuildRootfs: reads, symlinks, ownership, writes, rename, chmod, fifo and
// device nodes, an 8 MiB write read back after dropping caches, 300 files.
// Soft, for defects of go-nfs v0.0.4 that a server on it has to work around
// or document: hard-link creation (LINK parses its arguments in the wrong
// order), device nodes (MKNOD ignores NF3CHR and passes no file type for
// NF3BLK) and the text of an absolute symlink (go-billy's chroot rewrites
// it). A server that gets them right may assert them with its own checks.
func StandardChecks() []Check {
	return []Check{
		{Name: "root-is-nfs3", Script: `grep -q " / nfs .*vers=3" /proc/mounts`},
		{Name: "readdir-bin", Script: `test $(ls /bin | wc -l) = $(cat /etc/bin.count)`},
		{Name: "readdir-long", Script: `ls -la /bin >/dev/null`},
		{Name: "rel-symlink", Script: `test "$(readlink /bin/sh)" = busybox`},
		{Name: "abs-symlink-exec", Script: `/usr/bin/true`},
		{Name: "abs-symlink-value", Soft: true, Script: `echo "readlink=$(readlink /usr/bin/true)"; test "$(readlink /usr/bin/true)" = /bin/busybox`},
		{Name: "read-sha256", Script: `test "$(sha256sum /bin/busybox | cut -d" " -f1)" = "$(cat /etc/busybox.sha256)"`},
		{Name: "owner-root", Script: `test "$(stat -c %u:%g /bin/busybox)" = 0:0`},
		{Name: "devtmpfs", Script: `test -c /dev/null && test -c /dev/console`},
		{Name: "write-read", Script: `echo hello > /tmp/w && test "$(cat /tmp/w)" = hello`},
		{Name: "append", Script: `echo again >> /tmp/w && test $(wc -l < /tmp/w) = 2`},
		{Name: "rename", Script: `mv /tmp/w /tmp/w2 && test -f /tmp/w2 && ! test -e /tmp/w`},
		{Name: "symlink-create", Script: `ln -s w2 /tmp/l && test "$(cat /tmp/l)" = "hello
again"`},
		{Name: "hardlink-create", Soft: true, Script: `ln /tmp/w2 /tmp/h && test "$(stat -c %h /tmp/w2)" = 2 && rm /tmp/h`},
		{Name: "chmod", Script: `chmod 600 /tmp/w2 && test "$(stat -c %a /tmp/w2)" = 600`},
		{Name: "unlink", Script: `rm /tmp/w2 /tmp/l`},
		{Name: "mkdir-rmdir", Script: `mkdir -p /tmp/d/e && rmdir /tmp/d/e /tmp/d`},
		{Name: "mknod-fifo", Script: `mkfifo /tmp/fifo && test -p /tmp/fifo && rm /tmp/fifo`},
		{Name: "mknod-char", Soft: true, Script: `mknod /tmp/null c 1 3 && test -c /tmp/null && echo x > /tmp/null && rm /tmp/null`},
		{Name: "mknod-block", Soft: true, Script: `mknod /tmp/loop b 7 200 && ls -l /tmp/loop && test -b /tmp/loop && rm /tmp/loop`},
		{Name: "write-8MiB", Script: `dd if=/dev/urandom of=/tmp/big bs=1M count=8 2>/dev/null && a=$(sha256sum /tmp/big) && sync && echo 3 > /proc/sys/vm/drop_caches && b=$(sha256sum /tmp/big) && test "$a" = "$b" && rm /tmp/big`},
		{Name: "many-files", Script: `mkdir /tmp/many && for i in $(seq 1 300); do : > /tmp/many/f$i; done && test $(ls /tmp/many | wc -l) = 300 && rm -r /tmp/many`},
		{Name: "clock-sane", Script: `test $(date +%Y) -ge 2024`},
	}
}

func copyExecutable(src, dst string) (sha string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), os.Rename(tmp, dst)
}

// writeFileAtomic replaces name, so a running guest that has the old file
// open keeps reading the old content instead of a half-written new one.
func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
