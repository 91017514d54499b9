package dhcpd

import (
	"errors"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a request (the "outcome" label).
const (
	outOffer        = "offer"
	outAck          = "ack"
	outNak          = "nak"
	outReleased     = "released"
	outDeclined     = "declined"
	outNotAllowed   = "not_allowed"    // booting client we may not boot (unknown under "record", netboot off)
	outPolicyIgnore = "policy_ignored" // unknown booting client under "ignore"
	outIgnoredOther = "ignored_other"  // non-node, non-booting client with IgnoreOthers
	outOtherServer  = "other_server"   // REQUEST for another server's offer
	outNoSubnet     = "no_subnet"
	outNoAddress    = "no_address"
	outUnsupported  = "unsupported" // message type this mode does not answer
	outRateLimited  = "rate_limited"
	outCommitFailed = "commit_failed"
	outNotForUs     = "not_for_us" // probe echo, wrong interface, reply op code
	outSilent       = "silent"     // RFC 2131 says stay silent (e.g. unknown REQUEST state)
)

type metrics struct {
	requests      *prometheus.CounterVec // message, class, outcome
	malformed     prometheus.Counter
	latency       *prometheus.HistogramVec // reply message
	commitSeconds prometheus.Histogram
	applySeconds  prometheus.Histogram // moving the lease journal into bbolt
	commitBatch   prometheus.Histogram
	commitErrors  prometheus.Counter
	rogue         prometheus.Gauge
	sendErrors    prometheus.Counter
	// droppedRecords: discovered/release/decline records not written
	// because the commit queue was full or the MAC table was.
	droppedRecords prometheus.Counter
	// discoveredDropped: discovered-client records removed (cap, expired).
	discoveredDropped *prometheus.CounterVec
	panics            *prometheus.CounterVec // where: packet, send

	// The request counters and latency histograms each packet touches,
	// looked up once: WithLabelValues hashes and compares every label
	// string on every call.
	mu        sync.RWMutex
	counters  map[counterKey]prometheus.Counter
	observers map[dhcpv4.MessageType]prometheus.Observer
}

type counterKey struct {
	typ     dhcpv4.MessageType
	class   Class
	outcome string
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		counters:  make(map[counterKey]prometheus.Counter),
		observers: make(map[dhcpv4.MessageType]prometheus.Observer),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pictl_dhcpd_requests_total",
			Help: "DHCP requests handled, by message type, client class and outcome.",
		}, []string{"message", "class", "outcome"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pictl_dhcpd_malformed_packets_total",
			Help: "Packets dropped because they do not parse as a DHCP request.",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pictl_dhcpd_reply_latency_seconds",
			Help:    "Time from receiving a request to sending its reply (durable commit included, deliberate reply delay excluded).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"message"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pictl_dhcpd_commit_seconds",
			Help:    "Duration of one group commit of lease records.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pictl_dhcpd_journal_apply_seconds",
			Help:    "Duration of moving the lease journal's records into the database (off the reply path).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pictl_dhcpd_commit_batch_records",
			Help:    "Records written per group commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096},
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pictl_dhcpd_commit_errors_total",
			Help: "Group commits that failed (their ACKs were not sent).",
		}),
		rogue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pictl_dhcpd_other_servers",
			Help: "Other DHCP servers that answered the start-up probe (full mode).",
		}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pictl_dhcpd_send_errors_total",
			Help: "Replies the socket refused to send.",
		}),
		droppedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pictl_dhcpd_dropped_records_total",
			Help: "Discovered-client, release and decline records not written because the commit queue or the client table was full.",
		}),
		discoveredDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pictl_dhcpd_discovered_dropped_total",
			Help: "Discovered-client records removed: over the cap (least recently seen first) or expired.",
		}, []string{"reason"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pictl_dhcpd_panics_total",
			Help: "Packets (or reply batches) whose handling panicked; dropped, the server kept serving.",
		}, []string{"where"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.malformed, m.latency, m.commitSeconds, m.applySeconds, m.commitBatch, m.commitErrors, m.rogue, m.sendErrors, m.droppedRecords, m.discoveredDropped, m.panics} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("dhcpd metrics already registered: one registry per server")
			}
			return nil, err
		}
	}
	return m, nil
}

// msgName is the message label: DHCPDISCOVER → "discover".
func msgName(t dhcpv4.MessageType) string {
	switch t {
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeOffer:
		return "offer"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeAck:
		return "ack"
	case dhcpv4.MessageTypeNak:
		return "nak"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeInform:
		return "inform"
	case dhcpv4.MessageTypeNone:
		return "bootp"
	}
	return "other"
}

func (m *metrics) count(t dhcpv4.MessageType, c Class, outcome string) {
	k := counterKey{t, c, outcome}
	m.mu.RLock()
	ctr := m.counters[k]
	m.mu.RUnlock()
	if ctr == nil {
		ctr = m.requests.WithLabelValues(msgName(t), c.String(), outcome)
		m.mu.Lock()
		m.counters[k] = ctr
		m.mu.Unlock()
	}
	ctr.Inc()
}

func (m *metrics) observe(t dhcpv4.MessageType, d time.Duration) {
	m.mu.RLock()
	o := m.observers[t]
	m.mu.RUnlock()
	if o == nil {
		o = m.latency.WithLabelValues(msgName(t))
		m.mu.Lock()
		m.observers[t] = o
		m.mu.Unlock()
	}
	o.Observe(d.Seconds())
}
