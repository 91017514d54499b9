package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestAsAgent(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"/usr/local/lib/pictl/pictl-agent"}, []string{"/usr/local/lib/pictl/pictl-agent", "agent"}},
		{[]string{"pictl-agent", "--verbose"}, []string{"pictl-agent", "agent", "--verbose"}},
		{[]string{"pictl-agent", "agent"}, []string{"pictl-agent", "agent"}},
		{[]string{"pictl", "node", "ls"}, []string{"pictl", "node", "ls"}},
	} {
		if got := asAgent(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("asAgent(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReadEnvFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "agent.env")
	os.WriteFile(good, []byte("# pictl\nPICTL_AGENT_URL=http://10.99.0.1:4390\nPICTL_AGENT_TOKEN=\"abc\"\n\nPICTL_NODE=pi3\n"), 0o600)
	bad := filepath.Join(dir, "bad.env")
	os.WriteFile(bad, []byte("PICTL_NODE=pi3\nnonsense\n"), 0o600)
	env, err := readEnvFile(good)
	if err != nil || env["PICTL_AGENT_URL"] != "http://10.99.0.1:4390" || env["PICTL_AGENT_TOKEN"] != "abc" || env["PICTL_NODE"] != "pi3" {
		t.Errorf("good file: %v, %v", env, err)
	}
	if _, err := readEnvFile(bad); err == nil || err.Error() != bad+":2: want KEY=VALUE" {
		t.Errorf("bad file: %v", err)
	}
	if env, err := readEnvFile(filepath.Join(dir, "missing")); err != nil || len(env) != 0 {
		t.Errorf("missing file: %v, %v", env, err)
	}
}
