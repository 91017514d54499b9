package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pictl/pictl/internal/cluster"
)

// Timing of Watch. Editors save in several steps (truncate+write, or
// write a copy and rename it over): changes are gathered for settleDelay
// after the last event, but never held longer than maxDelay, so a change
// is reported well within a second.
const (
	settleDelay  = 100 * time.Millisecond
	maxDelay     = 500 * time.Millisecond
	pollInterval = 2 * time.Second // safety net: no inotify (NFS), missed events
)

// Watch calls onChange after every change to cluster.yaml's content: with
// the new Cluster, or with nil and the error when the new content is
// invalid or the file is gone (the caller keeps its last good state). It
// watches the directory, so replacing the file by rename (pictl's own
// writes, most editors) is seen like an edit in place. Unchanged content
// (a touch, a chmod, a write of the same bytes) calls nothing.
//
// If the file changed since this Store's last Load, Watch reports that at
// once, so nothing between Load and Watch is missed. onChange runs on
// Watch's goroutine, one call at a time. Watch returns nil when ctx is
// done, or an error if it cannot watch at all.
func (s *Store) Watch(ctx context.Context, onChange func(*cluster.Cluster, error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.path, err)
	}
	defer w.Close()
	type watched struct{ dir, name string }
	var files []watched
	for _, p := range []string{s.path, s.target()} {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		f := watched{filepath.Dir(abs), filepath.Base(abs)}
		if len(files) > 0 && files[0] == f {
			break
		}
		if err := w.Add(f.dir); err != nil {
			return fmt.Errorf("watch %s: %w", f.dir, err)
		}
		files = append(files, f)
	}
	ours := func(name string) bool {
		abs, err := filepath.Abs(name)
		if err != nil {
			return false
		}
		for _, f := range files {
			if filepath.Dir(abs) == f.dir && filepath.Base(abs) == f.name {
				return true
			}
		}
		return false
	}

	// What was last reported (or loaded): the content, or the read error.
	var (
		lastData    []byte
		haveData    bool
		lastReadErr string
	)
	s.mu.Lock()
	lastData, haveData = s.lastLoaded, s.loadedOnce
	s.mu.Unlock()
	checkNow := haveData
	if !haveData {
		if data, err := s.read(); err != nil {
			lastReadErr = err.Error()
		} else {
			lastData, haveData = data, true
		}
	}
	check := func() {
		data, err := s.read()
		if err != nil {
			if err.Error() != lastReadErr {
				lastReadErr, haveData = err.Error(), false
				onChange(nil, err)
			}
			return
		}
		if lastReadErr == "" && haveData && same(data, lastData) {
			return
		}
		lastReadErr, lastData, haveData = "", data, true
		onChange(cluster.Load(s.path, data))
	}
	if checkNow {
		check()
	}

	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	var pendingSince time.Time
	touch := func() {
		now := time.Now()
		if pendingSince.IsZero() {
			pendingSince = now
		}
		wait := min(settleDelay, maxDelay-now.Sub(pendingSince))
		settle.Reset(max(wait, 0))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch " + s.path + ": watcher closed")
			}
			if ours(ev.Name) {
				touch()
			}
		case _, ok := <-w.Errors:
			if !ok {
				return errors.New("watch " + s.path + ": watcher closed")
			}
			touch() // e.g. queue overflow: events were lost, look again
		case <-settle.C:
			pendingSince = time.Time{}
			check()
		case <-poll.C:
			if pendingSince.IsZero() {
				check()
			}
		}
	}
}
