package controller

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchTree calls onChange after anything under dir changes (files added,
// edited, removed; dir itself created or removed), as cluster.yaml's
// watch does: inotify on dir's parent, dir and its subdirectories, events
// gathered for a moment, and a periodic look at the whole tree as a
// safety net (no inotify on NFS, missed events).
func watchTree(ctx context.Context, dir string, onChange func()) error {
	tw, err := newTreeWatch(dir)
	if err != nil {
		return err
	}
	return tw.run(ctx, onChange)
}

// treeWatch is a watch set up and fingerprinted, not yet running: changes
// made after newTreeWatch returns are reported by run.
type treeWatch struct {
	dir  string
	w    *fsnotify.Watcher
	last string
}

func newTreeWatch(dir string) (*treeWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	tw := &treeWatch{dir: dir, w: w}
	tw.addAll()
	tw.last = treeFingerprint(dir)
	return tw, nil
}

// addAll watches dir's parent, dir and its subdirectories (new ones too).
func (tw *treeWatch) addAll() {
	_ = tw.w.Add(filepath.Dir(tw.dir))
	_ = filepath.WalkDir(tw.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = tw.w.Add(p)
		}
		return nil
	})
}

func (tw *treeWatch) run(ctx context.Context, onChange func()) error {
	w, dir := tw.w, tw.dir
	defer w.Close()
	var settle <-chan time.Time
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	check := func() {
		tw.addAll()
		if fp := treeFingerprint(dir); fp != tw.last {
			tw.last = fp
			onChange()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Name == dir || filepath.Dir(ev.Name) != filepath.Dir(dir) {
				settle = time.After(100 * time.Millisecond)
			}
		case <-w.Errors:
			settle = time.After(100 * time.Millisecond)
		case <-settle:
			settle = nil
			check()
		case <-poll.C:
			check()
		}
	}
}

// treeFingerprint sums every name, size, mode and mtime under dir; "" when
// dir does not exist.
func treeFingerprint(dir string) string {
	h := sha256.New()
	found := false
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		found = true
		if fi, err := d.Info(); err == nil {
			fmt.Fprintf(h, "%s\x00%d\x00%v\x00%d\n", p, fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		}
		return nil
	})
	if !found {
		return ""
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
