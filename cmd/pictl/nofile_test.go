package main

import (
	"log/slog"
	"syscall"
	"testing"
)

// raiseNOFILE lifts a lowered soft limit back to the hard limit (issue 18:
// the process raises its own soft limit at start).
func TestRaiseNOFILE(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
	if orig.Max < 2048 {
		t.Skipf("hard limit %d too low to lower the soft one", orig.Max)
	}
	low := syscall.Rlimit{Cur: 1024, Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got, err := raiseNOFILE(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if got != orig.Max || now.Cur != orig.Max {
		t.Errorf("soft limit %d (reported %d), want the hard limit %d", now.Cur, got, orig.Max)
	}
}
