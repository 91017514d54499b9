package images

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressPrinterPlainLines(t *testing.T) {
	var buf bytes.Buffer
	p := ProgressPrinter(&buf)
	p(Progress{Image: "rpi", Phase: "extract", Done: 1 << 20, Total: 4 << 20, Elapsed: time.Second})
	p(Progress{Image: "rpi", Phase: "extract", Done: 2 << 20, Total: 4 << 20, Elapsed: 2 * time.Second}) // within 5 s: dropped
	p(Progress{Image: "rpi", Phase: "extract", Done: 4 << 20, Total: 4 << 20, Elapsed: 4 * time.Second, Final: true})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	if !strings.Contains(lines[0], "image rpi: extract 25%") || !strings.Contains(lines[0], "25%") || !strings.Contains(lines[0], "1.0 MiB/4.0 MiB 1.0 MiB/s") || !strings.Contains(lines[0], "ETA 3s") {
		t.Errorf("first line %q", lines[0])
	}
	if !strings.Contains(lines[1], "done in 4s") || strings.Contains(lines[1], "\x1b") {
		t.Errorf("last line %q", lines[1])
	}
}

func TestCompareVersions(t *testing.T) {
	if compareVersions("vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64") >= 0 {
		t.Error("6.1.0-9 sorted after 6.1.0-10")
	}
}
