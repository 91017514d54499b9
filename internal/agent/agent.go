package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Systemd is what the agent asks of the node's systemd (dbus.go talks to
// the real one over its private socket; tests fake it).
type Systemd interface {
	// Reload is `systemctl daemon-reload`.
	Reload(ctx context.Context) error
	// Isolate starts target in isolate mode and waits for the job; the
	// result is systemd's ("done", "failed", "dependency"...).
	Isolate(ctx context.Context, target string) (result string, err error)
	// Units reports target and the units it wants or requires.
	Units(ctx context.Context, target string) ([]UnitState, error)
	// Jobs counts systemd's queued jobs: an isolate's job is done when
	// the target is reached, while the units it stops may still be
	// stopping (MariaDB flushing), so settling waits for none.
	Jobs(ctx context.Context) (int, error)
	// StopMasked stops the units that run although their unit is now
	// masked, and names them. A role masks the services of other roles;
	// isolate keeps a service that a kept socket triggers (mariadb.service
	// behind mariadb.socket, which the package enabled in the image), so
	// the mask alone would leave the old role's service running.
	StopMasked(ctx context.Context) ([]string, error)
	// Stop stops those of units that are active (or starting) and names
	// them; units not loaded or already inactive are left alone.
	Stop(ctx context.Context, units []string) ([]string, error)
	// Refresh applies a changed layer of the role that runs: starts target
	// (units it newly wants start; running ones are kept, not restarted)
	// and reloads its running units that support reloading (HAProxy's
	// master-worker reload keeps every connection), naming them.
	Refresh(ctx context.Context, target string) (reloaded []string, err error)
	// Reboot reboots the node.
	Reboot(ctx context.Context) error
}

// Agent runs on a node.
type Agent struct {
	Client  *Client
	Systemd Systemd
	// Root is the node's root file system ("/"); LayerIDFile is read
	// below it.
	Root string
	Log  *slog.Logger

	// Poll is how long one long poll waits at most. Default 50s.
	Poll time.Duration
	// LayerTimeout bounds the wait for a new layer to show through NFS.
	// Default 2 minutes.
	LayerTimeout time.Duration
	// SettleTimeout bounds the wait for the target's units to leave
	// activating/deactivating after the isolate job. Default 2 minutes.
	SettleTimeout time.Duration
	// Retry is the pause after a failed call to the controller. Default 2s.
	Retry time.Duration
	// Tick is how often the agent looks at the layer file and unit
	// states while it waits for them. Default 200ms.
	Tick time.Duration
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Run follows the controller until ctx ends. Controller outages are
// retried forever: the node keeps running its role meanwhile.
func (a *Agent) Run(ctx context.Context) error {
	applied := ""       // the first poll answers at once: check what runs now
	var running Desired // what the last apply brought up; zero right after start
	for ctx.Err() == nil {
		d, err := a.Client.Desired(ctx, applied, orDefault(a.Poll, 50*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			a.log().Warn("asking the controller for the role failed; retrying", "err", err)
			sleep(ctx, orDefault(a.Retry, 2*time.Second))
			continue
		}
		if d.Layer == applied {
			continue
		}
		// Right after start the node may already run d: it booted into
		// its role, or only the agent restarted.
		var rep Report
		if applied != "" && sameRole(running, d) {
			rep = a.Refresh(ctx, d)
		} else {
			rep = a.Apply(ctx, d, running, applied == "")
		}
		if ctx.Err() != nil {
			break
		}
		for ctx.Err() == nil {
			if err := a.Client.Report(ctx, rep); err != nil {
				a.log().Warn("report to the controller failed; retrying", "err", err)
				sleep(ctx, orDefault(a.Retry, 2*time.Second))
				continue
			}
			break
		}
		applied, running = d.Layer, d
		if d.Reboot && rep.State == StateSwitching {
			// The reboot is under way; keep quiet until it takes us.
			<-ctx.Done()
		}
	}
	return nil
}

// Apply brings the node from the role it ran (from; zero when unknown)
// to d and says how that went. With maybeThere, a node whose target is
// already active is only reported on. The old role's target is stopped
// before systemd reloads its units, while systemd still holds them as
// they were loaded — the new layer masks them, and a masked unit has no
// ExecStop= left to undo what it did (the router's forwarding and NAT).
func (a *Agent) Apply(ctx context.Context, d Desired, from Desired, maybeThere bool) Report {
	rep := Report{Layer: d.Layer, Role: d.Role, Target: d.Target, State: StateSwitching}
	log := a.log().With("role", d.Role, "target", d.Target, "layer", d.Layer)

	if !maybeThere {
		a.tell(ctx, rep) // "switching" while the layer shows and systemd works
	}
	start := time.Now()
	if err := a.waitLayer(ctx, d.Layer); err != nil {
		return failed(rep, err)
	}
	rep.Stages.LayerVisible = time.Since(start)

	if maybeThere {
		// The agent starts early in the boot, while systemd still works
		// towards default.target (MariaDB may take a minute under
		// emulation): judge the target once the boot's jobs are done.
		a.waitNoJobs(ctx)
		if a.targetActive(ctx, d.Target) {
			return a.settle(ctx, rep)
		}
		a.tell(ctx, rep)
	}

	// What the old target pulled in, read before the reload forgets the
	// old role's unit files: isolate leaves mount units alone (systemd
	// ignores them on isolate) and a reloaded mount unit without its file
	// has lost StopWhenUnneeded=, so the old role's volume would stay
	// mounted.
	var before []UnitState
	if old := from.Target; old != "" && old != d.Target {
		before, _ = a.Systemd.Units(ctx, old)
		if strings.HasPrefix(old, "pictl-role-") && !d.Reboot {
			if _, err := a.Systemd.Stop(ctx, []string{old}); err != nil {
				log.Warn("stopping the old role's target failed; isolating anyway", "old", old, "err", err)
			}
		}
	}
	t := time.Now()
	if err := a.Systemd.Reload(ctx); err != nil {
		return failed(rep, fmt.Errorf("systemd daemon-reload: %w", err))
	}
	rep.Stages.Reload = time.Since(t)

	// A reboot switch is done once the node booted with the layer: a
	// target that did not come up then is isolated, never rebooted again
	// (that would loop).
	if d.Reboot && !maybeThere {
		log.Info("rebooting into the new role")
		if err := a.Systemd.Reboot(ctx); err != nil {
			return failed(rep, fmt.Errorf("reboot: %w", err))
		}
		return rep // switching: the node reports again once it is back
	}

	t = time.Now()
	result, err := a.Systemd.Isolate(ctx, d.Target)
	rep.Stages.Isolate = time.Since(t)
	if err != nil {
		return failed(rep, fmt.Errorf("isolate %s: %w", d.Target, err))
	}
	log.Info("target isolated", "result", result, "took", rep.Stages.Isolate)
	stopped, err := a.Systemd.StopMasked(ctx)
	if err != nil {
		return failed(rep, fmt.Errorf("stop masked units: %w", err))
	}
	if len(stopped) > 0 {
		log.Info("stopped units the new role masks", "units", stopped)
	}
	if left := a.leftovers(ctx, before, d.Target); len(left) > 0 {
		stopped, err := a.Systemd.Stop(ctx, left)
		if err != nil {
			return failed(rep, fmt.Errorf("stop what the old role started: %w", err))
		}
		if len(stopped) > 0 {
			log.Info("stopped units of the old role", "role", from.Role, "units", stopped)
		}
	}
	return a.settle(ctx, rep)
}

// sameRole says whether d is a new layer of the role the node runs (its
// inputs changed: web nodes behind an lb node, an address): such a layer
// is applied by Refresh, which keeps the role's services running.
func sameRole(running, d Desired) bool {
	return running.Layer != "" && running.Role != "" && running.Role == d.Role && running.Target == d.Target && !d.Reboot
}

// Refresh brings the node to a new layer of the role it runs: daemon-reload,
// then the target started again and its reloadable units reloaded — no
// isolate, so nothing restarts (HAProxy reloads gracefully; the VRRP
// address stays where it is).
func (a *Agent) Refresh(ctx context.Context, d Desired) Report {
	rep := Report{Layer: d.Layer, Role: d.Role, Target: d.Target, State: StateSwitching}
	log := a.log().With("role", d.Role, "target", d.Target, "layer", d.Layer)
	a.tell(ctx, rep)
	start := time.Now()
	if err := a.waitLayer(ctx, d.Layer); err != nil {
		return failed(rep, err)
	}
	rep.Stages.LayerVisible = time.Since(start)
	t := time.Now()
	if err := a.Systemd.Reload(ctx); err != nil {
		return failed(rep, fmt.Errorf("systemd daemon-reload: %w", err))
	}
	rep.Stages.Reload = time.Since(t)
	t = time.Now()
	reloaded, err := a.Systemd.Refresh(ctx, d.Target)
	rep.Stages.Refresh = time.Since(t)
	if err != nil {
		return failed(rep, fmt.Errorf("refresh %s: %w", d.Target, err))
	}
	log.Info("role layer refreshed", "reloaded", reloaded, "took", rep.Stages.Refresh)
	if _, err := a.Systemd.StopMasked(ctx); err != nil {
		return failed(rep, fmt.Errorf("stop masked units: %w", err))
	}
	return a.settle(ctx, rep)
}

// tell sends an interim report; the final one is retried, this one not.
func (a *Agent) tell(ctx context.Context, rep Report) {
	if err := a.Client.Report(ctx, rep); err != nil {
		a.log().Debug("interim report failed", "err", err)
	}
}

// leftovers are the mount units of the old target (before, its own entry
// first) that target does not want. Only mounts: isolate itself stops the
// other units the new target does not pull in (and keeps those that
// something else wants, such as a shared ssh.service), but systemd
// ignores mount units on isolate.
func (a *Agent) leftovers(ctx context.Context, before []UnitState, target string) []string {
	if len(before) < 2 {
		return nil
	}
	now, err := a.Systemd.Units(ctx, target)
	if err != nil {
		return nil
	}
	var left []string
	for _, u := range before[1:] {
		if strings.HasSuffix(u.Name, ".mount") && !slices.ContainsFunc(now, func(n UnitState) bool { return n.Name == u.Name }) {
			left = append(left, u.Name)
		}
	}
	return left
}

// waitNoJobs waits, at most SettleTimeout, until systemd has no job queued.
func (a *Agent) waitNoJobs(ctx context.Context) {
	deadline := time.Now().Add(orDefault(a.SettleTimeout, 2*time.Minute))
	for {
		jobs, err := a.Systemd.Jobs(ctx)
		if err != nil || jobs == 0 || time.Now().After(deadline) || !sleep(ctx, orDefault(a.Tick, 200*time.Millisecond)) {
			return
		}
	}
}

func (a *Agent) targetActive(ctx context.Context, target string) bool {
	units, err := a.Systemd.Units(ctx, target)
	return err == nil && len(units) > 0 && units[0].Name == target && units[0].Active == "active"
}

// waitLayer waits until the node's root shows the layer the controller
// announced: NFS attribute caching may show the old one for a while.
func (a *Agent) waitLayer(ctx context.Context, layer string) error {
	if layer == "" {
		return nil
	}
	path := filepath.Join(a.root(), LayerIDFile)
	deadline := time.Now().Add(orDefault(a.LayerTimeout, 2*time.Minute))
	var seen string
	for {
		// Opening the directory makes an NFS client ask for its attributes
		// (close-to-open) instead of trusting its cache for up to
		// acdirmin; nfsd changes them with every role layer.
		_, _ = os.ReadDir(filepath.Dir(path))
		b, err := os.ReadFile(path)
		seen = strings.TrimSpace(string(b))
		if err == nil && seen == layer {
			return nil
		}
		if time.Now().After(deadline) {
			if seen == "" {
				seen = "nothing"
			}
			return fmt.Errorf("the new role layer %s did not show through NFS in %s (%s holds %s)", layer, orDefault(a.LayerTimeout, 2*time.Minute), "/"+LayerIDFile, seen)
		}
		if !sleep(ctx, orDefault(a.Tick, 200*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

func (a *Agent) root() string {
	if a.Root == "" {
		return "/"
	}
	return a.Root
}

// settle waits until systemd has no job left and no unit of the target
// is still starting or stopping, then reports: active when the target and every unit is active, failed
// naming the first unit that is not.
func (a *Agent) settle(ctx context.Context, rep Report) Report {
	t := time.Now()
	deadline := t.Add(orDefault(a.SettleTimeout, 2*time.Minute))
	for {
		units, err := a.Systemd.Units(ctx, rep.Target)
		if err != nil {
			return failed(rep, fmt.Errorf("unit states: %w", err))
		}
		rep.Units = units
		jobs, err := a.Systemd.Jobs(ctx)
		if err != nil {
			return failed(rep, fmt.Errorf("systemd jobs: %w", err))
		}
		busy := jobs > 0
		for _, u := range units {
			if u.Active == "activating" || u.Active == "deactivating" || u.Active == "reloading" {
				busy = true
			}
		}
		if !busy || time.Now().After(deadline) || !sleep(ctx, orDefault(a.Tick, 200*time.Millisecond)) {
			break
		}
	}
	rep.Stages.Settle = time.Since(t)
	rep.State = StateActive
	for _, u := range rep.Units {
		// Without a role the target is multi-user.target, whose wants
		// include the image's oneshots (e2scrub_reap.service) that ran and
		// are inactive again: there only a failed unit is a failure.
		if u.Active != "active" && (rep.Role != "" || u.Name == rep.Target || u.Active == "failed") {
			rep.State = StateFailed
			if u.Name != rep.Target || rep.Failed == "" {
				rep.Failed = u.Name
			}
			if u.Name != rep.Target {
				break // a unit of the target says more than the target
			}
		}
	}
	if len(rep.Units) == 0 {
		rep.State, rep.Error = StateFailed, "systemd reports no unit "+rep.Target
	}
	return rep
}

func failed(rep Report, err error) Report {
	rep.State = StateFailed
	rep.Error = err.Error()
	return rep
}

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
