package dhcpd

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// Anyone on the boot network can forge DISCOVERs with new MACs, each of
// which would otherwise become a discovered-client record for ever: the
// records are capped (the least recently seen go first) and expire when a
// client has not been seen for DiscoveredExpiry. Both are counted in
// pictl_dhcpd_discovered_dropped_total.

// newRecords bounds how many discovered-client records are written per
// second: each goes through the committer, whose queue the lease commits
// (and so every ACK) share; a flood of forged MACs must not delay them.
// Real new machines are a handful a minute.
type newRecords struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

const (
	newRecordsPerSecond = 20
	newRecordsBurst     = 200
)

func (n *newRecords) allow(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.last.IsZero() {
		n.tokens = newRecordsBurst
	} else if d := now.Sub(n.last).Seconds(); d > 0 {
		n.tokens = min(newRecordsBurst, n.tokens+d*newRecordsPerSecond)
	}
	n.last = now
	if n.tokens < 1 {
		return false
	}
	n.tokens--
	return true
}

// Defaults of Config.MaxDiscovered and Config.DiscoveredExpiry.
const (
	DefaultMaxDiscovered    = 1024
	DefaultDiscoveredExpiry = 7 * 24 * time.Hour
)

const (
	dropCap     = "cap"
	dropExpired = "expired"
)

// trimDiscovered deletes the least recently seen records beyond max, in the
// transaction that added new ones; it returns how many went.
func trimDiscovered(b *bbolt.Bucket, max int) (int, error) {
	if max <= 0 {
		return 0, nil
	}
	n := 0 // Stats would not see this transaction's own writes
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	if n <= max {
		return 0, nil
	}
	type seen struct {
		key  []byte
		last time.Time
	}
	all := make([]seen, 0, n)
	err := b.ForEach(func(k, v []byte) error {
		var d Discovered
		_ = json.Unmarshal(v, &d) // unreadable records sort first (zero time)
		all = append(all, seen{key: slices.Clone(k), last: d.LastSeen})
		return nil
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(all, func(a, b seen) int { return a.last.Compare(b.last) })
	drop := len(all) - max
	for _, s := range all[:drop] {
		if err := b.Delete(s.key); err != nil {
			return 0, err
		}
	}
	return drop, nil
}

// ExpireDiscovered deletes the records of clients not seen since before;
// it returns how many went.
func (st *Store) ExpireDiscovered(before time.Time) (int, error) {
	n := 0
	err := st.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDiscovered)
		var old [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			var d Discovered
			if json.Unmarshal(v, &d) != nil || d.LastSeen.Before(before) {
				old = append(old, slices.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

// expireDiscovered runs from housekeeping.
func (s *Server) expireDiscovered(now time.Time) {
	n, err := s.store.ExpireDiscovered(now.Add(-s.cfg.Load().DiscoveredExpiry))
	if err != nil {
		s.log.Warn("expired discovered clients not removed", "error", err)
		return
	}
	if n > 0 {
		s.metrics.discoveredDropped.WithLabelValues(dropExpired).Add(float64(n))
		s.log.Info("discovered clients expired", "count", n)
	}
}
