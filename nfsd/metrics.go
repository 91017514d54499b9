package nfsd

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	mounts      *prometheus.CounterVec
	staleHandle *prometheus.CounterVec
	copyUps     prometheus.Counter
	conns       prometheus.Gauge
	fastReads   prometheus.Counter
	fastLookups prometheus.Counter
	fastAttrs   prometheus.Counter
	// refusedCalls: calls refused before any file system work, by reason
	// (credential, address, permission).
	refusedCalls *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		mounts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "mounts_total",
			Help: "MOUNT requests by result (ok, refused, error).",
		}, []string{"result"}),
		staleHandle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "rejected_handles_total",
			Help: "File handles answered with NFS3ERR_STALE, by reason (forged, export, stale).",
		}, []string{"reason"}),
		copyUps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "copy_ups_total",
			Help: "Objects copied from a lower layer into a node's own layer.",
		}),
		fastReads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "direct_reads_total",
			Help: "READs answered by nfsd itself rather than go-nfs.",
		}),
		fastLookups: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "direct_lookups_total",
			Help: "LOOKUPs answered by nfsd itself rather than go-nfs.",
		}),
		fastAttrs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "direct_getattrs_total",
			Help: "GETATTRs and ACCESSes answered by nfsd itself rather than go-nfs.",
		}),
		refusedCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "refused_calls_total",
			Help: "NFS calls refused by reason (credential, address, permission).",
		}, []string{"reason"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "pictl", Subsystem: "nfsd", Name: "connections",
			Help: "Open client connections.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.mounts, m.staleHandle, m.copyUps, m.conns, m.fastReads, m.fastLookups, m.fastAttrs, m.refusedCalls} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("nfsd: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
