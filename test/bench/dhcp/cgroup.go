package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuQuota caps the server under test at a fraction of one CPU (cgroup
// CPU bandwidth control, -server-cpu), the same cap for every server. On
// this two-core machine perfdhcp, not the server, otherwise sets the
// ceiling: it needs about a core per 7,000 leases/s. With a cap both
// servers run out of CPU before perfdhcp does, so the table compares the
// servers, as on a machine where the load generator has cores to spare.
type cpuQuota struct {
	dir      string // the cgroup directory, "" = no cap
	v2       bool
	fraction float64
}

// cgroupPeriod is short so a capped server is stopped for at most a few
// milliseconds at a time: with the default 100 ms period a throttled
// server would sit out 75 ms and drop packets for reasons of the cap's
// granularity, not its speed.
const cgroupPeriod = 10000 // µs

func newCPUQuota(fraction float64) (*cpuQuota, error) {
	if fraction <= 0 {
		return &cpuQuota{}, nil
	}
	name := fmt.Sprintf("pictl-dhcp-bench-%d", os.Getpid())
	quota := int(fraction * cgroupPeriod)
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if !strings.Contains(" "+string(b)+" ", " cpu ") {
			return nil, errors.New("-server-cpu: the cgroup v2 cpu controller is not available")
		}
		os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0)
		q := &cpuQuota{dir: filepath.Join("/sys/fs/cgroup", name), v2: true, fraction: fraction}
		if err := os.Mkdir(q.dir, 0o755); err != nil {
			return nil, fmt.Errorf("-server-cpu: %w", err)
		}
		if err := os.WriteFile(filepath.Join(q.dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, cgroupPeriod)), 0); err != nil {
			q.remove()
			return nil, fmt.Errorf("-server-cpu: %w", err)
		}
		return q, nil
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err != nil {
		return nil, errors.New("-server-cpu: no cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 /sys/fs/cgroup)")
	}
	q := &cpuQuota{dir: filepath.Join("/sys/fs/cgroup/cpu", name), fraction: fraction}
	if err := os.Mkdir(q.dir, 0o755); err != nil {
		return nil, fmt.Errorf("-server-cpu: %w", err)
	}
	for _, kv := range [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cgroupPeriod)}, {"cpu.cfs_quota_us", strconv.Itoa(quota)}} {
		if err := os.WriteFile(filepath.Join(q.dir, kv[0]), []byte(kv[1]), 0); err != nil {
			q.remove()
			return nil, fmt.Errorf("-server-cpu: %s: %w", kv[0], err)
		}
	}
	return q, nil
}

// enter moves process pid, every thread of it, into the capped cgroup;
// threads it starts later are born there.
func (q *cpuQuota) enter(pid int) error {
	if q == nil || q.dir == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(q.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("cap server CPU: %w", err)
	}
	return nil
}

// remove deletes the cgroup (its processes have exited by then).
func (q *cpuQuota) remove() {
	if q != nil && q.dir != "" {
		os.Remove(q.dir)
	}
}

func (q *cpuQuota) String() string {
	if q == nil || q.dir == "" {
		return "server CPU not capped"
	}
	return fmt.Sprintf("server capped at %.2f CPU (cgroup, %d µs period)", q.fraction, cgroupPeriod)
}
