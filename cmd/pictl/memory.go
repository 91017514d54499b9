package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After a burst — a hostile client's connections and RPC records, a boot
// storm — the heap is mostly garbage, but the Go runtime only collects when
// allocation reaches the goal set by the last collection (taken during the
// burst) or after two idle minutes, and returns pages to the system only
// after collecting them. A quiet controller would hold the burst's memory
// for minutes. memoryReturner collects and returns it once a whole interval
// passed without a collection while the heap is large.

const (
	memoryCheckInterval = 10 * time.Second
	// memoryLargeHeap: below this the held memory is not worth a forced
	// collection.
	memoryLargeHeap = 64 << 20
	// memoryRegrowth: after a forced return the heap must have grown this
	// much again before the next one, so a large live heap is not
	// collected every interval for nothing.
	memoryRegrowth = 32 << 20
)

type memoryReturner struct {
	samples []metrics.Sample
	lastGCs uint64
	floor   uint64 // heap held right after the last forced return
	log     *slog.Logger
}

func newMemoryReturner(log *slog.Logger) *memoryReturner {
	return &memoryReturner{
		samples: []metrics.Sample{
			{Name: "/gc/cycles/total:gc-cycles"},
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/heap/unused:bytes"},
			{Name: "/memory/classes/heap/free:bytes"},
		},
		log: log,
	}
}

// held reads the collections so far and the heap memory held from the
// system (objects live or dead, fragmentation, free pages not yet returned).
func (m *memoryReturner) held() (gcs, bytes uint64) {
	metrics.Read(m.samples)
	gcs = m.samples[0].Value.Uint64()
	for _, s := range m.samples[1:] {
		bytes += s.Value.Uint64()
	}
	return gcs, bytes
}

// check returns memory when no collection ran since the last check and the
// heap holds much more than after the last return; it reports whether it did.
func (m *memoryReturner) check() bool {
	gcs, held := m.held()
	idle := gcs == m.lastGCs
	m.lastGCs = gcs
	if !idle || held < memoryLargeHeap || held < m.floor+memoryRegrowth {
		if !idle && held < m.floor {
			m.floor = held
		}
		return false
	}
	debug.FreeOSMemory()
	gcs, after := m.held()
	m.lastGCs, m.floor = gcs, after
	m.log.Debug("returned idle heap memory to the system", "held_mib", held>>20, "after_mib", after>>20)
	return true
}

func (m *memoryReturner) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	m.lastGCs, _ = m.held()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.check()
		}
	}
}
