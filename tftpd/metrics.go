package tftpd

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is how a request ended.
type Outcome string

const (
	OutcomeOK            Outcome = "ok"
	OutcomeNotFound      Outcome = "not_found"      // no such file (probes end here)
	OutcomeUnknownClient Outcome = "unknown_client" // no node matches
	OutcomeNetbootOff    Outcome = "netboot_off"    // node may not netboot
	OutcomeDenied        Outcome = "denied"         // invalid name or escape attempt
	OutcomeBusy          Outcome = "busy"           // per-client transfer limit
	OutcomeWriteRefused  Outcome = "write_refused"  // the server is read-only
	// OutcomeEarlyAbort: the client ended the transfer with an ERROR in
	// answer to our OACK or to the first block — the Raspberry Pi's tsize
	// probe ("Early terminate"). Not a failure.
	OutcomeEarlyAbort  Outcome = "early_abort"
	OutcomeClientAbort Outcome = "client_abort" // client sent ERROR during data
	OutcomeTimeout     Outcome = "timeout"      // client stopped acknowledging
	OutcomeError       Outcome = "error"        // server-side trouble
)

// Failed reports whether the outcome is a transfer that should have
// succeeded and did not.
func (o Outcome) Failed() bool {
	switch o {
	case OutcomeClientAbort, OutcomeTimeout, OutcomeError:
		return true
	}
	return false
}

type metrics struct {
	transfers  *prometheus.CounterVec
	windowed   prometheus.Counter
	sentBytes  prometheus.Counter
	duration   *prometheus.HistogramVec
	active     prometheus.Gauge
	badPackets prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, cache *contentCache) (*metrics, error) {
	m := &metrics{
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "tftp", Name: "requests_total",
			Help: "TFTP requests by outcome (ok, not_found, early_abort = Pi tsize probe, timeout, ...).",
		}, []string{"outcome"}),
		windowed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "tftp", Name: "windowed_requests_total",
			Help: "TFTP read requests served by the windowed sender (blocks ahead of ACKs); the rest are lock-step.",
		}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "tftp", Name: "sent_bytes_total",
			Help: "File bytes sent in TFTP DATA packets (payload, without retransmissions).",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "pictl", Subsystem: "tftp", Name: "transfer_duration_seconds",
			Help:    "Duration of TFTP transfers that sent data, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "pictl", Subsystem: "tftp", Name: "active_transfers",
			Help: "TFTP transfers in progress.",
		}),
		badPackets: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pictl", Subsystem: "tftp", Name: "dropped_packets_total",
			Help: "Packets on the TFTP port that were not a valid request (malformed, stray ACK/DATA).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	cacheBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "pictl", Subsystem: "tftp", Name: "cache_bytes",
		Help: "Boot file bytes held in memory.",
	}, func() float64 { return float64(cache.size()) })
	for _, c := range []prometheus.Collector{m.transfers, m.windowed, m.sentBytes, m.duration, m.active, m.badPackets, cacheBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register tftpd metrics: %w", err)
		}
	}
	return m, nil
}
