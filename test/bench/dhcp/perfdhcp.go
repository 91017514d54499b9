package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// trial is one perfdhcp run's result.
type trial struct {
	target   int     // requested 4-way exchanges per second
	rate     float64 // achieved, as perfdhcp reports it
	doSent   int
	doDrops  int
	raSent   int
	raDrops  int
	doLat    []float64 // DISCOVER→OFFER latencies, ms
	raLat    []float64 // REQUEST→ACK latencies, ms
	duration time.Duration
	cpu      time.Duration // the server's CPU time during the trial
	toolCPU  time.Duration // perfdhcp's CPU time (it shares the machine)
	// UDP receive-buffer overflows in the server's and perfdhcp's
	// namespaces during the trial.
	serverOverflows, toolOverflows int
	toolBuffers                    string // what -tool-rcvbuf did, "" when off
}

// dropRatio is the worse of the two exchanges' drop ratios, in percent;
// a REQUEST never sent (its OFFER was dropped) counts once, as that drop.
func (t trial) dropRatio() float64 {
	r := func(drops, sent int) float64 {
		if sent == 0 {
			return 100
		}
		return 100 * float64(drops) / float64(sent)
	}
	return max(r(t.doDrops, t.doSent), r(t.raDrops, t.raSent))
}

// ok says the server kept up: ≤ maxDrop % drops and perfdhcp reached (nearly)
// the rate it was asked for.
func (t trial) ok(maxDrop float64) bool {
	return t.dropRatio() <= maxDrop && t.rate >= 0.97*float64(t.target)
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

var (
	reRate    = regexp.MustCompile(`Rate: ([0-9.]+) 4-way exchanges/second`)
	reSection = regexp.MustCompile(`\*\*\*Statistics for: (DISCOVER-OFFER|REQUEST-ACK)\*\*\*`)
	reStamps  = regexp.MustCompile(`\*\*\*Timestamps for packets: (DISCOVER-OFFER|REQUEST-ACK)\*\*\*`)
	reSent    = regexp.MustCompile(`^sent packets: (\d+)`)
	reDrops   = regexp.MustCompile(`^drops: (\d+)`)
	reStamp   = regexp.MustCompile(`^sent / received: ([0-9.]+) / ([0-9.]+)`)
)

// toolOpts is how perfdhcp runs in every trial, whichever server it
// measures.
type toolOpts struct {
	rcvbuf int      // > 0: its sockets get this receive buffer (growSocketBuffers)
	args   []string // extra flags, e.g. -g single
}

func (o toolOpts) String() string {
	s := "perfdhcp's default receive buffer"
	if o.rcvbuf > 0 {
		s = fmt.Sprintf("perfdhcp's receive buffer forced to %d bytes (-tool-rcvbuf, both servers)", o.rcvbuf)
	}
	if len(o.args) > 0 {
		s = fmt.Sprintf("perfdhcp %s, %s", strings.Join(o.args, " "), s)
	}
	return s
}

// runPerfdhcp runs perfdhcp in the client namespace as a relay (-l) against
// server for d at rate exchanges/s over clients simulated clients. When
// its sockets' receive buffers are forced, the trial's diagnostics say
// what they got.
func runPerfdhcp(ctx context.Context, cpus, clientNS, local, server string, rate, clients int, d time.Duration, o toolOpts) (trial, error) {
	args := []string{"perfdhcp", "-4", "-r", strconv.Itoa(rate), "-R", strconv.Itoa(clients),
		"-p", strconv.Itoa(int(d.Seconds())), "-x", "t"}
	args = append(args, o.args...)
	cmd := netnsCmd(ctx, cpus, clientNS, append(args, "-l", local, server)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return trial{}, fmt.Errorf("perfdhcp: %w", err)
	}
	var bufs socketBuffers
	if o.rcvbuf > 0 {
		// `ip netns exec` execs perfdhcp: the PID is perfdhcp's.
		bufs = growSocketBuffers(ctx, cmd.Process.Pid, o.rcvbuf)
	}
	err := cmd.Wait()
	// Exit status 3 means "some exchanges not completed": a normal result.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 3) {
		return trial{}, fmt.Errorf("perfdhcp: %v: %s", err, stderr.Bytes())
	}
	t := parsePerfdhcp(stdout.String())
	t.target, t.duration = rate, d
	if ps := cmd.ProcessState; ps != nil {
		t.toolCPU = ps.UserTime() + ps.SystemTime()
	}
	if o.rcvbuf > 0 {
		t.toolBuffers = bufs.String()
	}
	return t, nil
}

func parsePerfdhcp(out string) trial {
	var t trial
	section, stamps := "", ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := reRate.FindStringSubmatch(line); m != nil {
			t.rate, _ = strconv.ParseFloat(m[1], 64)
			continue
		}
		if m := reSection.FindStringSubmatch(line); m != nil {
			section, stamps = m[1], ""
			continue
		}
		if m := reStamps.FindStringSubmatch(line); m != nil {
			stamps, section = m[1], ""
			continue
		}
		if m := reSent.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			if section == "DISCOVER-OFFER" {
				t.doSent = n
			} else if section == "REQUEST-ACK" {
				t.raSent = n
			}
			continue
		}
		if m := reDrops.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			if section == "DISCOVER-OFFER" {
				t.doDrops = n
			} else if section == "REQUEST-ACK" {
				t.raDrops = n
			}
			continue
		}
		if m := reStamp.FindStringSubmatch(line); m != nil && stamps != "" {
			sent, _ := strconv.ParseFloat(m[1], 64)
			recv, _ := strconv.ParseFloat(m[2], 64)
			ms := (recv - sent) * 1000
			if stamps == "DISCOVER-OFFER" {
				t.doLat = append(t.doLat, ms)
			} else {
				t.raLat = append(t.raLat, ms)
			}
		}
	}
	return t
}
