package tftpd

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		reason   string // "" = accepted
	}{
		{in: "bootcode.bin", want: "bootcode.bin"},
		{in: "0a1b2c3d/start.elf", want: "0a1b2c3d/start.elf"},
		{in: "overlays/vc4-kms-v3d.dtbo", want: "overlays/vc4-kms-v3d.dtbo"},
		{in: "./config.txt", want: "config.txt"},
		{in: "a//b", want: "a/b"},
		{in: "overlays/", want: "overlays"},
		{in: "a/./b", want: "a/b"},
		{in: "", reason: "empty"},
		{in: ".", reason: "names a directory"},
		{in: "./", reason: "names a directory"},
		{in: "..", reason: "parent directory element"},
		{in: "../etc/passwd", reason: "parent directory element"},
		{in: "../../../../etc/shadow", reason: "parent directory element"},
		{in: "a/../b", reason: "parent directory element"},
		{in: "a/..", reason: "parent directory element"},
		{in: "0a1b2c3d/../../x", reason: "parent directory element"},
		{in: "/etc/passwd", reason: "absolute path"},
		{in: "//etc/passwd", reason: "absolute path"},
		{in: "config.txt\x00.png", reason: "control character"},
		{in: "\x00", reason: "control character"},
		{in: "a\nb", reason: "control character"},
		{in: "a\x7fb", reason: "control character"},
		{in: `..\..\windows\win.ini`, reason: "backslash"},
		{in: `boot\pxelinux.0`, reason: "backslash"},
		{in: "\xff\xfe", reason: "not UTF-8"},
		{in: strings.Repeat("a", MaxNameLen), want: strings.Repeat("a", MaxNameLen)},
		{in: strings.Repeat("a", MaxNameLen+1), reason: "too long"},
		{in: strings.Repeat("a/", 200), reason: "too long"},
		{in: "...", want: "..."}, // a legal (odd) file name, not a parent reference
		{in: "..foo", want: "..foo"},
	}
	for _, tt := range tests {
		got, err := CleanName(tt.in)
		if tt.reason == "" {
			if err != nil || got != tt.want {
				t.Errorf("CleanName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		var ne *NameError
		if !errors.As(err, &ne) || ne.Reason != tt.reason {
			t.Errorf("CleanName(%q) = %q, %v; want refusal %q", tt.in, got, err, tt.reason)
		}
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"bootcode.bin", "0a1b2c3d/start4.elf", "../x", "/abs", "a/./b//c", "a\x00b", "dc-a6-32-01-36-c2/config.txt", "..", "\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanName(name)
		if err != nil {
			return
		}
		if got == "" || got == "." || len(got) > MaxNameLen || path.Clean(got) != got ||
			strings.HasPrefix(got, "/") || strings.ContainsAny(got, "\x00\\") {
			t.Fatalf("CleanName(%q) = %q: not a clean relative name", name, got)
		}
		for _, e := range strings.Split(got, "/") {
			if e == ".." {
				t.Fatalf("CleanName(%q) = %q keeps a parent element", name, got)
			}
		}
		if again, err := CleanName(got); err != nil || again != got {
			t.Fatalf("CleanName not idempotent on %q: %q, %v", got, again, err)
		}
	})
}

func TestPrefixes(t *testing.T) {
	for s, want := range map[string]bool{
		"0a1b2c3d": true, "deadbeef": true, "DEADBEEF": false, "0a1b2c3": false,
		"0a1b2c3d0": false, "0a1b2c3g": false, "overlays": false,
	} {
		if got := isSerialPrefix(s); got != want {
			t.Errorf("isSerialPrefix(%q) = %v", s, got)
		}
	}
	for s, want := range map[string]string{
		"dc-a6-32-01-36-c2": "dc:a6:32:01:36:c2",
		"DC-A6-32-01-36-C2": "dc:a6:32:01:36:c2",
		"dc:a6:32:01:36:c2": "", // the Pi dashes it; a colon form is a file name
		"dc-a6-32-01-36":    "",
		"dc-a6-32-01-36-zz": "",
	} {
		mac, ok := parseMACPrefix(s)
		if (want == "") == ok || ok && mac.String() != want {
			t.Errorf("parseMACPrefix(%q) = %v, %v; want %q", s, mac, ok, want)
		}
	}
}
