package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// cpuPins splits the machine between perfdhcp and the server under test
// (-pin TOOL:SERVER, CPU lists as taskset takes them). On two cores the
// load generator and the server otherwise contend for the same CPUs, and
// perfdhcp, not the server, sets the ceiling; pinned, each side has its own
// core, and both servers get the same one.
type cpuPins struct{ tool, server string }

func parsePins(s string) (cpuPins, error) {
	if s == "" {
		return cpuPins{}, nil
	}
	tool, server, ok := strings.Cut(s, ":")
	if !ok || tool == "" || server == "" {
		return cpuPins{}, fmt.Errorf("-pin %q: want TOOL_CPUS:SERVER_CPUS, e.g. 0:1", s)
	}
	return cpuPins{tool: tool, server: server}, nil
}

func (p cpuPins) String() string {
	if p.tool == "" {
		return "not pinned (perfdhcp and server share every CPU)"
	}
	return fmt.Sprintf("perfdhcp pinned to CPU %s, server to CPU %s (taskset)", p.tool, p.server)
}

// netnsCmd runs argv in namespace ns, on cpus when set. taskset and
// `ip netns exec` both exec, so the PID is argv[0]'s, and every thread the
// program starts later inherits the affinity.
func netnsCmd(ctx context.Context, cpus, ns string, argv ...string) *exec.Cmd {
	args := append([]string{"netns", "exec", ns}, argv...)
	if cpus == "" {
		return exec.CommandContext(ctx, "ip", args...)
	}
	return exec.CommandContext(ctx, "taskset", append([]string{"-c", cpus, "ip"}, args...)...)
}
