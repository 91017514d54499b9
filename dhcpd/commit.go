package dhcpd

import (
	"encoding/json"
	"log/slog"
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

// committer is the group commit: every op queued while a batch is being
// written goes into the next one, so one fsync covers many leases and
// the ACKs wait at most about two commit times. ACKs are only sent from
// done, after the record is durable.
//
// With a journal (the default), a batch of lease records is durable once
// appended to it and fdatasync'ed (one sync); the records move into bbolt
// (two syncs) every applyEvery or applyMax records, off the ACK path. A
// batch with a discovered client goes straight to bbolt (with what the
// journal holds), as every batch does without a journal.
type committer struct {
	db    *bbolt.DB
	store *Store
	// journalPath: "" = no journal, every batch is a bbolt
	// transaction. run opens it as journal; journalBroken after a failed
	// write, until bbolt has taken over everything (see journalBatch).
	journalPath   string
	journal       *journal
	journalBroken bool
	ch            chan commitOp
	max           int
	metrics       *metrics
	now           func() time.Time
	// Under load (a batch of at least lingerFrom ops), wait up to linger
	// for more before committing: each commit costs fdatasyncs and CPU
	// whatever its size, so fewer, larger commits leave more CPU for
	// answering. An idle server commits at once.
	linger     time.Duration
	lingerFrom int

	// pending is what the journal holds and bbolt not yet (whole
	// records); applyAt is when it goes to bbolt at the latest.
	pending    []byte
	applyAt    time.Time
	applyEvery time.Duration
	applyMax   int
	nPending   int
	log        *slog.Logger
	// maxDiscovered (nil or <= 0: no cap) bounds the discovered records.
	maxDiscovered func() int
}

func newCommitter(db *bbolt.DB, m *metrics, now func() time.Time) *committer {
	return &committer{db: db, ch: make(chan commitOp, 1<<16), max: 4096, metrics: m, now: now, lingerFrom: 4,
		applyEvery: 250 * time.Millisecond, applyMax: 16384, log: slog.New(slog.DiscardHandler)}
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
	applyTimer := time.NewTimer(time.Hour)
	applyTimer.Stop()
	if c.journalPath != "" {
		j, err := openJournal(c.journalPath)
		if err != nil {
			c.log.Error("no lease journal: every commit goes to the database", "error", err)
		} else {
			c.journal = j
			defer j.close()
		}
	}
	defer c.applyPending() // on shutdown: leave the journal empty
	for {
		var op commitOp
		ok := true
		if c.nPending > 0 {
			applyTimer.Reset(time.Until(c.applyAt))
			select {
			case op, ok = <-c.ch:
			case <-applyTimer.C:
				c.applyPending()
				continue
			}
			applyTimer.Stop()
		} else {
			op, ok = <-c.ch
		}
		if !ok {
			return
		}
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
		clear(fresh)
		start := time.Now()
		var err error
		if c.journal != nil && !c.journalBroken && !hasDiscovered(batch) {
			err = c.journalBatch(batch)
		} else {
			err = c.commitBatch(batch, fresh)
		}
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
		// Checked here too: a busy committer always has an op ready, and
		// select need not pick the timer.
		if c.nPending >= c.applyMax || (c.nPending > 0 && !time.Now().Before(c.applyAt)) {
			c.applyPending()
		}
	}
}

func hasDiscovered(batch []commitOp) bool {
	for _, op := range batch {
		if op.discovered != nil {
			return true
		}
	}
	return false
}

// journalBatch makes batch's lease records durable in the journal.
func (c *committer) journalBatch(batch []commitOp) error {
	n, records := len(c.pending), 0
	for _, op := range batch {
		if op.lease != nil {
			c.pending = appendRecord(c.pending, op.lease)
			records++
		}
	}
	if records == 0 {
		return nil // nothing to write (a flush marker)
	}
	if c.nPending == 0 {
		c.applyAt = time.Now().Add(c.applyEvery)
	}
	c.nPending += records
	if err := c.journal.write(c.pending[n:]); err != nil {
		// Part of the batch may be in the file, and a torn record would
		// hide every later one from a replay: no one is answered, and
		// batches go to bbolt (with these records, unACKed but harmless)
		// until it holds all the journal does and the journal is empty.
		c.journalBroken = true
		return err
	}
	return nil
}

// commitBatch writes batch (and what the journal holds) to bbolt in one
// transaction, then empties the journal.
func (c *committer) commitBatch(batch []commitOp, fresh []bool) error {
	lock := c.journal != nil && c.nPending > 0
	if lock {
		c.store.mu.Lock()
		defer c.store.mu.Unlock()
	}
	added, trimmed := false, 0
	err := c.db.Update(func(tx *bbolt.Tx) error {
		if err := putRecords(tx, c.pending); err != nil {
			return err
		}
		leases, disc := tx.Bucket(bucketLeases), tx.Bucket(bucketDiscovered)
		for i, op := range batch {
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
				added = added || isNew
			}
		}
		if added && c.maxDiscovered != nil {
			n, err := trimDiscovered(disc, c.maxDiscovered())
			if err != nil {
				return err
			}
			trimmed = n
		}
		return nil
	})
	if err == nil && trimmed > 0 {
		c.metrics.discoveredDropped.WithLabelValues(dropCap).Add(float64(trimmed))
	}
	if err == nil && lock {
		c.resetJournal()
	}
	return err
}

// applyPending moves the journal's records into bbolt and empties it.
// On failure they stay in the journal (durable) and pending, and are
// tried again at the next apply.
func (c *committer) applyPending() {
	if c.nPending == 0 || c.journal == nil {
		return
	}
	c.store.mu.Lock()
	defer c.store.mu.Unlock()
	start := time.Now()
	err := c.db.Update(func(tx *bbolt.Tx) error { return putRecords(tx, c.pending) })
	c.metrics.applySeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		c.metrics.commitErrors.Inc()
		c.log.Error("lease journal not moved to the database (kept in the journal)", "records", c.nPending, "error", err)
		c.applyAt = time.Now().Add(c.applyEvery)
		return
	}
	c.resetJournal()
}

// resetJournal empties the journal and pending, under store.mu.
func (c *committer) resetJournal() {
	if err := c.journal.reset(); err != nil {
		// The records are in bbolt: a journal that could not be
		// emptied is applied again later, which changes nothing.
		c.log.Warn("lease journal not emptied", "error", err)
	}
	c.pending = c.pending[:0]
	c.nPending = 0
	c.journalBroken = false
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
