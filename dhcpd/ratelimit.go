package dhcpd

import (
	"hash/maphash"
	"sync"
	"time"
)

// rateLimiter is a token bucket per MAC, so one broken client retrying in a
// tight loop cannot starve the others. Buckets that have refilled are
// dropped by sweep, which bounds the memory to the recently active clients.
type rateLimiter struct {
	rate   float64 // tokens per second
	burst  float64
	seed   maphash.Seed
	shards [32]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[hwKey]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	if rate < 0 {
		return nil
	}
	r := &rateLimiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].buckets = make(map[hwKey]*bucket)
	}
	return r
}

func (r *rateLimiter) shard(k hwKey) *limiterShard {
	return &r.shards[maphash.Bytes(r.seed, k.b[:k.n])%uint64(len(r.shards))]
}

// allow takes a token for k, reporting false when it has none.
func (r *rateLimiter) allow(k hwKey, now time.Time) bool {
	if r == nil {
		return true
	}
	s := r.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[k]
	if b == nil {
		s.buckets[k] = &bucket{tokens: r.burst - 1, last: now}
		return true
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops buckets that would be full again by now.
func (r *rateLimiter) sweep(now time.Time) {
	if r == nil {
		return
	}
	full := time.Duration(r.burst / r.rate * float64(time.Second))
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for k, b := range s.buckets {
			if now.Sub(b.last) > full {
				delete(s.buckets, k)
			}
		}
		s.mu.Unlock()
	}
}
