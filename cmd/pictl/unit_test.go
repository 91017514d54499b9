package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pictl/pictl/internal/cluster"
)

// The shipped pictl.service passes systemd-analyze verify (with ExecStart
// pointed at a binary that exists on this machine).
func TestServiceUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (make deps installs it)")
	}
	unit, err := os.ReadFile("pictl.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/pictl", self)
	if !strings.Contains(text, "Type=notify") || !strings.Contains(text, "WatchdogSec=") {
		t.Error("pictl.service must be Type=notify with a WatchdogSec")
	}
	if !strings.Contains(text, "\nLimitNOFILE=65536:") {
		t.Error("pictl.service must keep a high LimitNOFILE (soft 65536, a higher hard limit pictl raises to)")
	}
	path := filepath.Join(t.TempDir(), "pictl.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The cluster.yaml example in the README is valid: the docs cannot drift
// from the schema unnoticed.
func TestReadmeExampleValidates(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "```yaml\ncontroller:")
	if start < 0 {
		t.Fatal("README has no ```yaml cluster.yaml example")
	}
	body := s[start+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	if _, err := cluster.Load("README.md", []byte(body)); err != nil {
		t.Fatalf("README example: %v", err)
	}
}

// The example file shipped beside the binary's source is valid too.
func TestExampleClusterValidates(t *testing.T) {
	body, err := os.ReadFile("cluster.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Load("cluster.example.yaml", body); err != nil {
		t.Fatalf("example: %v", err)
	}
}
