package balancer

import (
	"context"
	"net"
	"time"
)

// serveTCP is the L4 mode: pick a member, connect (another member if the
// connect fails), then copy both ways. Between two *net.TCPConn, ReadFrom
// uses splice(2) on Linux: the bytes never enter user space.
func (b *Balancer) serveTCP(ctx context.Context, c *net.TCPConn) {
	defer c.Close()
	var skip []*backend
	for attempt := 0; attempt <= b.cfg.Retries; attempt++ {
		now := time.Now()
		m := b.pick(nil, skip, now.UnixNano())
		if m == nil {
			return
		}
		m.inflight.Add(1)
		conn, err := b.dialer.DialContext(ctx, "tcp", m.dial)
		if err != nil {
			m.done()
			m.recordFailure(failConnect, b.passive, time.Now().UnixNano())
			skip = append(skip, m)
			continue
		}
		mc := conn.(*net.TCPConn)
		m.requests.Add(1)
		m.recordSuccess(0)
		joinIdle(c, mc, b.cfg.TunnelIdleTimeout)
		mc.Close()
		m.latency.observe(time.Since(now))
		m.done()
		return
	}
}
