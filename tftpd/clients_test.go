package tftpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package: %s)", name, map[string]string{"curl": "curl", "tftp": "tftp-hpa"}[name])
	}
	return p
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// curl is a real client with blksize and tsize; --interface picks the
// loopback address that identifies the node.
func TestCurl(t *testing.T) {
	curl := needTool(t, "curl")
	h := newHarness(t, nil)
	out := filepath.Join(t.TempDir(), "out")
	url := func(name string) string { return fmt.Sprintf("tftp://127.0.0.1:%d/%s", h.addr.Port, name) }

	for _, blksize := range []string{"512", "1024", "1428", "1468", "8192"} {
		for _, file := range []string{"kernel8.img", "exact-512.bin", "empty.bin", "d2e4f6a8/start4.elf"} {
			if msg, err := run(t, curl, "-sS", "--interface", "127.0.0.4", "--tftp-blksize", blksize, "-o", out, url(file)); err != nil {
				t.Fatalf("curl blksize %s %s: %v\n%s", blksize, file, err, msg)
			}
			got, _ := os.ReadFile(out)
			if want := h.piFiles[strings.TrimPrefix(file, "d2e4f6a8/")]; !bytes.Equal(got, want) {
				t.Fatalf("curl blksize %s %s: %d bytes, want %d", blksize, file, len(got), len(want))
			}
		}
	}
	// Rendered per node: the address decides which node's cmdline.txt.
	for ip, node := range map[string]string{"127.0.0.3": "pi3", "127.0.0.4": "pi4"} {
		msg, err := run(t, curl, "-sS", "--interface", ip, "-o", out, url("cmdline.txt"))
		got, _ := os.ReadFile(out)
		if err != nil || !strings.Contains(string(got), "nfsroot=127.0.0.1:/nodes/"+node+",vers=3,tcp,port=2049,mountport=2049,nolock ") {
			t.Errorf("cmdline.txt for %s: %v %s\n%s", node, err, msg, got)
		}
	}
	// Missing: curl reports TFTP "file not found" (exit 68).
	_, err := run(t, curl, "-sS", "--interface", "127.0.0.4", "-o", out, url("no-such-file"))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 68 {
		t.Errorf("missing file: curl exit %v, want 68 (CURLE_TFTP_NOTFOUND)", err)
	}
	h.settle()
	for _, o := range []Outcome{OutcomeTimeout, OutcomeClientAbort, OutcomeError, OutcomeEarlyAbort} {
		if n := h.count(o); n != 0 {
			t.Errorf("%s = %d, want 0", o, n)
		}
	}
}

// tftp-hpa's client sends no options: plain 512-byte lock-step.
func TestTFTPHPA(t *testing.T) {
	tftpBin := needTool(t, "tftp")
	h := newHarness(t, nil)
	dir := t.TempDir()
	port := fmt.Sprint(h.addr.Port)
	// The client's source address is 127.0.0.1: node vm1 (kernel+initrd).
	for _, file := range []string{"vmlinuz", "initrd.img"} {
		local := filepath.Join(dir, file)
		msg, err := run(t, tftpBin, "-m", "binary", "127.0.0.1", port, "-c", "get", file, local)
		got, _ := os.ReadFile(local)
		if err != nil || !bytes.Equal(got, h.x86Files[file]) {
			t.Fatalf("tftp get %s: %v %s (%d bytes, want %d)", file, err, msg, len(got), len(h.x86Files[file]))
		}
	}
	msg, _ := run(t, tftpBin, "-m", "binary", "127.0.0.1", port, "-c", "get", "missing", filepath.Join(dir, "m"))
	if !strings.Contains(msg, "Error code 1: file not found") {
		t.Errorf("missing file: %q", msg)
	}
	msg, _ = run(t, tftpBin, "-m", "binary", "127.0.0.1", port, "-c", "get", "../../etc/passwd", filepath.Join(dir, "p"))
	if !strings.Contains(msg, "access violation") || strings.Contains(msg, "/etc") {
		t.Errorf("traversal: %q", msg)
	}
	writeFile(t, filepath.Join(dir, "upload"), []byte("data"))
	msg, _ = run(t, tftpBin, "-m", "binary", "127.0.0.1", port, "-c", "put", filepath.Join(dir, "upload"), "upload")
	if !strings.Contains(msg, "read-only server") {
		t.Errorf("put: %q", msg)
	}
	h.settle()
	if n := h.count(OutcomeWriteRefused); n != 1 {
		t.Errorf("write_refused = %d", n)
	}
}

// iPXE: boot.ipxe names the kernel and initrd relative to itself; fetching
// those names from the same client must give the image's files. pin/tftp's
// own client stands in for iPXE (blksize 1432 and tsize, as iPXE asks).
func TestIPXEChain(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.NFSPort = 20490 })
	c, err := tftp.NewClient(h.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetBlockSize(1432)
	c.RequestTSize(true)
	c.SetTimeout(5 * time.Second)
	get := func(name string) []byte {
		t.Helper()
		wt, err := c.Receive(name, "octet")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Size before WriteTo: the library's client drops the OACK's
		// options when the transfer starts.
		n, ok := wt.(tftp.IncomingTransfer).Size()
		var b bytes.Buffer
		if _, err := wt.WriteTo(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !ok || n != int64(b.Len()) {
			t.Errorf("%s: tsize %d %v, got %d bytes", name, n, ok, b.Len())
		}
		return b.Bytes()
	}
	script := string(get("boot.ipxe"))
	kernel := regexp.MustCompile(`(?m)^kernel (\S+) (.*) \|\| kernel (\S+) (.*)$`).FindStringSubmatch(script)
	initrd := regexp.MustCompile(`(?m)^initrd (\S+) \|\| initrd (\S+)$`).FindStringSubmatch(script)
	if !strings.HasPrefix(script, "#!ipxe\n") || kernel == nil || initrd == nil || !strings.HasSuffix(script, "boot\n") ||
		kernel[1] != kernel[3] || kernel[2] != kernel[4] || initrd[1] != initrd[2] {
		t.Fatalf("script (each download once more on failure):\n%s", script)
	}
	if want := "initrd=initrd.img console=tty0 console=ttyS0,115200 root=/dev/nfs nfsroot=127.0.0.1:/nodes/vm1,vers=3,tcp,port=20490,mountport=20490,nolock rw ip=dhcp rootwait console=ttyS0"; kernel[2] != want {
		t.Errorf("kernel args %q, want %q", kernel[2], want)
	}
	if got := get(kernel[1]); !bytes.Equal(got, h.x86Files["vmlinuz"]) {
		t.Errorf("kernel %s: wrong content", kernel[1])
	}
	if got := get(initrd[1]); !bytes.Equal(got, h.x86Files["initrd.img"]) {
		t.Errorf("initrd %s: wrong content", initrd[1])
	}
	// A Pi node gets no script.
	pi := h.client("127.0.0.4")
	if res, err := pi.get("boot.ipxe", rawOpts{}); err != nil || res.errCode != 1 {
		t.Errorf("boot.ipxe for a Pi: %+v %v", res, err)
	}
	h.settle()
	stages, _ := h.rec.snapshot()
	seen := map[Stage]bool{}
	for _, ev := range stages {
		if ev.Node == "vm1" {
			seen[ev.Stage] = true
		}
	}
	if !seen[StageIPXE] || !seen[StageKernel] || !seen[StageInitrd] {
		t.Errorf("stages for vm1: %v", seen)
	}
}

// A file over 32 MiB at blksize 512 has more than 65535 blocks: the block
// number wraps to 0. The raw client checks the wrap and the bytes; curl does
// the same as a real client.
func TestBlockNumberRollover(t *testing.T) {
	if testing.Short() {
		t.Skip("33 MiB transfers")
	}
	h := newHarness(t, nil)
	big := make([]byte, 33<<20+123)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(big); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < len(big); j++ {
			big[i+j] = byte(v >> (8 * j))
		}
	}
	writeFile(t, filepath.Join(h.piDir, "big.img"), big)

	c := h.client("127.0.0.4")
	res, err := c.get("big.img", rawOpts{options: []string{"tsize", "0"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.wrapped || res.blocks != len(big)/512+1 || sha256.Sum256(res.data) != sha256.Sum256(big) {
		t.Fatalf("raw client: wrapped=%v blocks=%d (want %d) bytes=%d", res.wrapped, res.blocks, len(big)/512+1, len(res.data))
	}
	if curl, err := exec.LookPath("curl"); err == nil {
		out := filepath.Join(t.TempDir(), "big")
		if msg, err := run(t, curl, "-sS", "--interface", "127.0.0.4", "--tftp-blksize", "512", "-o", out,
			fmt.Sprintf("tftp://127.0.0.1:%d/big.img", h.addr.Port)); err != nil {
			t.Fatalf("curl: %v %s", err, msg)
		}
		f, _ := os.Open(out)
		defer f.Close()
		hash := sha256.New()
		io.Copy(hash, f)
		if !bytes.Equal(hash.Sum(nil), func() []byte { s := sha256.Sum256(big); return s[:] }()) {
			t.Fatal("curl: content differs")
		}
	}
	h.settle()
	if n := h.count(OutcomeOK); n < 1 || h.sentBytes() < int64(len(big)) {
		t.Errorf("ok=%d sent=%d", n, h.sentBytes())
	}
}
