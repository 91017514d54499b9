package balancer

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyHist is a lock-free histogram with geometric buckets (×1.25 from
// 10 µs), cheap enough for every request. Percentiles read from it are
// the upper bound of the bucket they fall in: at most 25 % high.
//
// The counts only grow (Prometheus takes them whole). For `pictl lb
// status`, which shows how members answer now, Run marks the counts every
// tick, and recentQuantile reads what came after the oldest mark kept:
// the last minute rather than everything since pictl serve started.
type latencyHist struct {
	counts [numBuckets]atomic.Uint64
	sumNs  atomic.Uint64

	mu    sync.Mutex
	marks [windowMarks][numBuckets]uint64 // ring of the counts at past ticks
	next  int                             // where the next mark goes
	kept  int                             // marks in the ring
}

const (
	numBuckets = 64
	// windowMarks × Run's 5 s tick: a window of 55 to 60 s.
	windowMarks = 12
)

// bucketBounds[i] is bucket i's upper bound in nanoseconds; the last
// bucket is unbounded.
func bucketBound(i int) float64 {
	return 10e3 * math.Pow(1.25, float64(i))
}

func (h *latencyHist) observe(d time.Duration) {
	ns := float64(d)
	i := 0
	if ns > 10e3 {
		i = int(math.Ceil(math.Log(ns/10e3) / math.Log(1.25)))
		if i >= numBuckets {
			i = numBuckets - 1
		}
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(d))
}

// mark records the counts as they are now (Run, every tick).
func (h *latencyHist) mark() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.counts {
		h.marks[h.next][i] = h.counts[i].Load()
	}
	h.next = (h.next + 1) % windowMarks
	h.kept = min(h.kept+1, windowMarks)
}

// recentQuantile is the q-quantile of what was observed since the oldest
// mark kept (since the start before the first mark), 0 with nothing.
func (h *latencyHist) recentQuantile(q float64) time.Duration {
	var counts [numBuckets]uint64
	h.mu.Lock()
	oldest := (h.next - h.kept + windowMarks) % windowMarks
	for i := range counts {
		counts[i] = h.counts[i].Load()
		if h.kept > 0 {
			counts[i] -= h.marks[oldest][i]
		}
	}
	h.mu.Unlock()
	return quantileOf(&counts, q)
}

// quantileOf is the q-quantile (0..1) of a histogram's counts.
func quantileOf(counts *[numBuckets]uint64, q float64) time.Duration {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return time.Duration(bucketBound(i))
		}
	}
	return time.Duration(bucketBound(numBuckets - 1))
}

// MemberStatus is one member in a Status snapshot.
type MemberStatus struct {
	Name      string
	Address   string // addr:port
	Weight    int
	State     string // pending, up, down, draining, removed, or ejected
	InFlight  int64
	Requests  uint64
	Errors    uint64 // connect errors, resets, timeouts, bad responses
	Ejections uint64
	P50, P99  time.Duration // over the last minute (see latencyHist)
}

// Status is what `pictl lb status` and GET /v1/balancer show.
type Status struct {
	Mode    string
	Policy  string
	Members []MemberStatus
}

// Status returns a snapshot of the members, current and draining.
func (b *Balancer) Status() Status {
	st := Status{Mode: b.cfg.Mode, Policy: b.cfg.Policy}
	if st.Policy == "" {
		st.Policy = LeastConnections
	}
	now := time.Now().UnixNano()
	members := *b.members.Load()
	b.mu.Lock()
	all := append(append([]*backend(nil), members...), b.gone...)
	b.mu.Unlock()
	for _, m := range all {
		state := stateNames[m.state.Load()]
		if state == "up" && m.ejectUntil.Load() > now {
			state = "ejected"
		}
		st.Members = append(st.Members, MemberStatus{
			Name: m.Name, Address: m.dial, Weight: int(m.weight.Load()), State: state,
			InFlight: m.inflight.Load(), Requests: m.requests.Load(), Errors: m.errors.Load(),
			Ejections: m.ejections.Load(),
			P50:       m.latency.recentQuantile(0.50), P99: m.latency.recentQuantile(0.99),
		})
	}
	return st
}

// Collector exports the balancer's series for a registry the caller
// manages (Config.Registry registers it at New instead). Every Balancer's
// collector describes the same series, so a caller replacing its Balancer
// can keep one registration that asks the current one.
func (b *Balancer) Collector() prometheus.Collector { return newCollector(b) }

// collector exports the members' counters at scrape time, so the request
// path touches only its own atomics.
type collector struct {
	b                                                                            *Balancer
	descRequests, descFailures, descInFlight, descUp, descEjections, descLatency *prometheus.Desc
}

func newCollector(b *Balancer) *collector {
	return &collector{
		b: b,
		descRequests: prometheus.NewDesc("pictl_balancer_requests_total",
			"Responses relayed (HTTP) or sessions (TCP) per member and status code.", []string{"member", "code"}, nil),
		descFailures: prometheus.NewDesc("pictl_balancer_member_failures_total",
			"Failed attempts and checks per member and kind.", []string{"member", "kind"}, nil),
		descInFlight: prometheus.NewDesc("pictl_balancer_inflight",
			"Requests or sessions in progress per member.", []string{"member"}, nil),
		descUp: prometheus.NewDesc("pictl_balancer_member_up",
			"1 if the member takes new requests.", []string{"member"}, nil),
		descEjections: prometheus.NewDesc("pictl_balancer_ejections_total",
			"Passive ejections per member.", []string{"member"}, nil),
		descLatency: prometheus.NewDesc("pictl_balancer_request_duration_seconds",
			"Time from request head to end of response per member.", []string{"member"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.descRequests, c.descFailures, c.descInFlight, c.descUp, c.descEjections, c.descLatency} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now().UnixNano()
	for _, m := range *c.b.members.Load() {
		for code := range m.codes {
			if n := m.codes[code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(c.descRequests, prometheus.CounterValue, float64(n), m.Name, strconv.Itoa(code))
			}
		}
		for k := range m.failures {
			ch <- prometheus.MustNewConstMetric(c.descFailures, prometheus.CounterValue, float64(m.failures[k].Load()), m.Name, failNames[k])
		}
		ch <- prometheus.MustNewConstMetric(c.descInFlight, prometheus.GaugeValue, float64(m.inflight.Load()), m.Name)
		up := 0.0
		if m.usable(now) {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.descUp, prometheus.GaugeValue, up, m.Name)
		ch <- prometheus.MustNewConstMetric(c.descEjections, prometheus.CounterValue, float64(m.ejections.Load()), m.Name)
		buckets := map[float64]uint64{}
		var total uint64
		for i := 0; i < numBuckets-1; i++ {
			total += m.latency.counts[i].Load()
			buckets[bucketBound(i)/1e9] = total
		}
		total += m.latency.counts[numBuckets-1].Load()
		ch <- prometheus.MustNewConstHistogram(c.descLatency, total, float64(m.latency.sumNs.Load())/1e9, buckets, m.Name)
	}
}
