package dhcpd

import (
	"encoding/json"
	"net"
	"time"

	"go.etcd.io/bbolt"
)

// commitOp is one change to dhcpd's buckets. done (may be nil) runs after
// the transaction holding it is on disk, or failed; reply is sent then.
type commitOp struct {
	lease      *Lease
	discovered *Discovered
	reply      *reply
	done       func(err error, newClient bool)
}

// committer is the group commit: every op queued while a transaction is
// being written goes into the next one, so one fsync covers many leases and
// the ACKs wait at most about two commit times. ACKs are only sent from
// done, after the record is durable.
type committer struct {
	db      *bbolt.DB
	ch      chan commitOp
	max     int
	metrics *metrics
	now     func() time.Time
	// Under load (a batch of at least lingerFrom ops), wait up to linger
	// for more before committing: each commit costs two fdatasyncs and
	// ~200 µs of CPU whatever its size, so fewer, larger commits leave
	// more CPU for answering. An idle server commits at once.
	linger     time.Duration
	lingerFrom int
}

func newCommitter(db *bbolt.DB, m *metrics, now func() time.Time) *committer {
	return &committer{db: db, ch: make(chan commitOp, 1<<16), max: 4096, metrics: m, now: now, lingerFrom: 4}
}

// submit queues op; it blocks only when 64k ops are already waiting (the
// back-pressure that slows ACKs down to what the disk takes).
func (c *committer) submit(op commitOp) { c.ch <- op }

// trySubmit queues op unless the queue is full: for records whose loss
// costs nothing but a little bookkeeping (discovered clients, releases),
// so a flood of forged MACs cannot stall the readers.
func (c *committer) trySubmit(op commitOp) bool {
	select {
	case c.ch <- op:
		return true
	default:
		return false
	}
}

// run commits until ch is closed and drained; after (may be nil) gets
// each batch once it is durable (or failed), to send its replies.
func (c *committer) run(after func(ops []commitOp, err error)) {
	batch := make([]commitOp, 0, c.max)
	fresh := make([]bool, 0, c.max)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for op := range c.ch {
		batch = append(batch[:0], op)
		open := c.drain(&batch)
		if open && c.linger > 0 && len(batch) >= c.lingerFrom {
			timer.Reset(c.linger)
		linger:
			for len(batch) < c.max {
				select {
				case op, ok := <-c.ch:
					if !ok {
						break linger
					}
					batch = append(batch, op)
				case <-timer.C:
					break linger
				}
			}
			timer.Stop()
		}
		fresh = fresh[:len(batch)]
		start := time.Now()
		err := c.db.Update(func(tx *bbolt.Tx) error {
			leases, disc := tx.Bucket(bucketLeases), tx.Bucket(bucketDiscovered)
			for i, op := range batch {
				fresh[i] = false
				if op.lease != nil {
					if err := leases.Put(ipKey(op.lease.IP), encodeLease(op.lease)); err != nil {
						return err
					}
				}
				if op.discovered != nil {
					isNew, err := putDiscovered(disc, op.discovered)
					if err != nil {
						return err
					}
					fresh[i] = isNew
				}
			}
			return nil
		})
		c.metrics.commitSeconds.Observe(time.Since(start).Seconds())
		c.metrics.commitBatch.Observe(float64(len(batch)))
		if err != nil {
			c.metrics.commitErrors.Inc()
		}
		if after != nil {
			after(batch, err)
		}
		for i, op := range batch {
			if op.done != nil {
				op.done(err, fresh[i])
			}
			batch[i] = commitOp{}
		}
	}
}

// drain appends what is queued, without waiting; false when ch is closed.
func (c *committer) drain(batch *[]commitOp) bool {
	for len(*batch) < c.max {
		select {
		case op, ok := <-c.ch:
			if !ok {
				return false
			}
			*batch = append(*batch, op)
		default:
			return true
		}
	}
	return true
}

// putDiscovered merges d into its record: first-seen stays, the rest is
// the latest sighting.
func putDiscovered(b *bbolt.Bucket, d *Discovered) (bool, error) {
	key := []byte(d.MAC)
	rec := *d
	isNew := true
	if old := b.Get(key); old != nil {
		var prev Discovered
		if json.Unmarshal(old, &prev) == nil {
			isNew = false
			if !prev.FirstSeen.IsZero() {
				rec.FirstSeen = prev.FirstSeen
			}
			if rec.Serial == "" {
				rec.Serial = prev.Serial
			}
		}
	}
	v, err := json.Marshal(&rec)
	if err != nil {
		return false, err
	}
	return isNew, b.Put(key, v)
}

// hwKey is a hardware address usable as a map key without allocating.
type hwKey struct {
	n uint8
	b [16]byte
}

func keyOf(mac net.HardwareAddr) hwKey {
	var k hwKey
	k.n = uint8(copy(k.b[:], mac))
	return k
}

func (k hwKey) mac() net.HardwareAddr {
	m := make(net.HardwareAddr, k.n)
	copy(m, k.b[:k.n])
	return m
}
