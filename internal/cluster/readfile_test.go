package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 18 row 6: an invalid UTF-8 byte or a NUL is reported where it is,
// not at 1:1.
func TestTextProblemPosition(t *testing.T) {
	var b strings.Builder
	for i := 1; i < 40; i++ {
		b.WriteString("# line\n")
	}
	head := b.String()
	tests := []struct {
		name, line40 string
		want         string
	}{
		{"invalid utf-8", "  name: caf\xe9\n", "cluster.yaml:40:12: invalid UTF-8 byte 0xe9"},
		{"nul", "  name: a\x00b\n", "cluster.yaml:40:10: NUL byte"},
		{"after multibyte", "  # ééé\xff\n", "cluster.yaml:40:8: invalid UTF-8 byte 0xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("cluster.yaml", []byte(head+tt.line40))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to start with %q", err, tt.want)
			}
			var el ErrorList
			if !errors.As(err, &el) || len(el) != 1 || el[0].Line != 40 {
				t.Fatalf("error list %v", el)
			}
		})
	}
}

// A cluster.yaml that is /dev/zero (through a symlink), a FIFO or huge fails
// at once with a clear error; a symlink to a regular file is read.
func TestReadFileRefusesNonFilesAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(zero); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("huge file: %v", err)
	}
	real := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(real, []byte("nodes: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(link); err != nil || string(data) != "nodes: {}\n" {
		t.Errorf("symlink to a file: %q, %v", data, err)
	}
}
