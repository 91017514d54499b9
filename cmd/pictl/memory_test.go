package main

import (
	"log/slog"
	"runtime"
	"testing"
)

// A burst's garbage held by an idle process goes back to the system at the
// next check; a busy process (collections running) is left to the runtime.
func TestMemoryReturnerReturnsIdleGarbage(t *testing.T) {
	m := newMemoryReturner(slog.New(slog.DiscardHandler))
	burst := make([]byte, 160<<20)
	for i := range burst {
		burst[i] = byte(i)
	}
	runtime.GC() // the burst is live here, as it is during an attack
	m.check()    // sees the collection: not idle
	runtime.KeepAlive(burst)
	burst = nil

	_, before := m.held()
	if !m.check() {
		t.Fatalf("an idle heap of %d MiB was not returned", before>>20)
	}
	_, after := m.held()
	if before-after < 128<<20 {
		t.Errorf("held %d MiB before, %d MiB after the return", before>>20, after>>20)
	}
	if m.check() {
		t.Errorf("returned again with nothing regrown (held %d MiB)", after>>20)
	}
	runtime.GC()
	if m.check() {
		t.Errorf("returned memory right after the runtime collected")
	}
}
