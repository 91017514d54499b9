package agent

import (
	"context"
	"fmt"
	"slices"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// SystemdBus is Systemd over systemd's private socket
// (/run/systemd/private): it works without a dbus-daemon, which minimal
// node images lack, and needs root, which the agent's unit runs as.
type SystemdBus struct {
	conn *sdbus.Conn
}

// DialSystemd connects to the node's systemd.
func DialSystemd(ctx context.Context) (*SystemdBus, error) {
	conn, err := sdbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd private socket: %w", err)
	}
	return &SystemdBus{conn: conn}, nil
}

func (s *SystemdBus) Close() { s.conn.Close() }

func (s *SystemdBus) Reload(ctx context.Context) error { return s.conn.ReloadContext(ctx) }

func (s *SystemdBus) Isolate(ctx context.Context, target string) (string, error) {
	done := make(chan string, 1)
	if _, err := s.conn.StartUnitContext(ctx, target, "isolate", done); err != nil {
		return "", err
	}
	select {
	case r := <-done:
		return r, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Units lists target first, then the units it wants or requires, sorted.
func (s *SystemdBus) Units(ctx context.Context, target string) ([]UnitState, error) {
	props, err := s.conn.GetUnitPropertiesContext(ctx, target)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, key := range []string{"Requires", "Wants", "BindsTo"} {
		if v, ok := props[key].([]string); ok {
			deps = append(deps, v...)
		}
	}
	slices.Sort(deps)
	deps = slices.Compact(deps)
	list, err := s.conn.ListUnitsByNamesContext(ctx, append([]string{target}, deps...))
	if err != nil {
		return nil, err
	}
	out := make([]UnitState, 0, len(list))
	for _, u := range list {
		if u.LoadState == "not-found" && u.Name != target {
			continue // a Wants= of a unit the image lacks is no failure
		}
		out = append(out, UnitState{Name: u.Name, Active: u.ActiveState, Sub: u.SubState})
	}
	return out, nil
}

func (s *SystemdBus) StopMasked(ctx context.Context) ([]string, error) {
	units, err := s.conn.ListUnitsFilteredContext(ctx, []string{"active", "activating", "reloading"})
	if err != nil {
		return nil, err
	}
	var stopped []string
	for _, u := range units {
		if u.LoadState != "masked" {
			continue
		}
		done := make(chan string, 1)
		if _, err := s.conn.StopUnitContext(ctx, u.Name, "replace", done); err != nil {
			return stopped, fmt.Errorf("stop %s: %w", u.Name, err)
		}
		select {
		case <-done:
		case <-ctx.Done():
			return stopped, ctx.Err()
		}
		stopped = append(stopped, u.Name)
	}
	return stopped, nil
}

func (s *SystemdBus) Refresh(ctx context.Context, target string) ([]string, error) {
	if err := s.waitJob(ctx, func(done chan<- string) (int, error) {
		return s.conn.StartUnitContext(ctx, target, "replace", done)
	}); err != nil {
		return nil, fmt.Errorf("start %s: %w", target, err)
	}
	units, err := s.Units(ctx, target)
	if err != nil {
		return nil, err
	}
	var reloaded []string
	for _, u := range units {
		if u.Name == target || u.Active != "active" {
			continue
		}
		p, err := s.conn.GetUnitPropertyContext(ctx, u.Name, "CanReload")
		if err != nil {
			return reloaded, fmt.Errorf("%s: %w", u.Name, err)
		}
		if can, _ := p.Value.Value().(bool); !can {
			continue
		}
		if err := s.waitJob(ctx, func(done chan<- string) (int, error) {
			return s.conn.ReloadUnitContext(ctx, u.Name, "replace", done)
		}); err != nil {
			return reloaded, fmt.Errorf("reload %s: %w", u.Name, err)
		}
		reloaded = append(reloaded, u.Name)
	}
	return reloaded, nil
}

// waitJob queues a job and waits for its result; a result other than
// "done" is an error.
func (s *SystemdBus) waitJob(ctx context.Context, queue func(done chan<- string) (int, error)) error {
	done := make(chan string, 1)
	if _, err := queue(done); err != nil {
		return err
	}
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("job %s", r)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *SystemdBus) Stop(ctx context.Context, units []string) ([]string, error) {
	if len(units) == 0 {
		return nil, nil
	}
	list, err := s.conn.ListUnitsByNamesContext(ctx, units)
	if err != nil {
		return nil, err
	}
	var stopped []string
	for _, u := range list {
		if u.ActiveState == "inactive" || u.ActiveState == "failed" {
			continue
		}
		if err := s.waitJob(ctx, func(done chan<- string) (int, error) {
			return s.conn.StopUnitContext(ctx, u.Name, "replace", done)
		}); err != nil {
			return stopped, fmt.Errorf("stop %s: %w", u.Name, err)
		}
		stopped = append(stopped, u.Name)
	}
	return stopped, nil
}

func (s *SystemdBus) Jobs(ctx context.Context) (int, error) {
	jobs, err := s.conn.ListJobsContext(ctx)
	return len(jobs), err
}

func (s *SystemdBus) Reboot(ctx context.Context) error {
	_, err := s.conn.StartUnitContext(ctx, "reboot.target", "replace-irreversibly", nil)
	return err
}
