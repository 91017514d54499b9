package balancer

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// startHealth puts a new member in service: at once without active
// checks, otherwise after its first passing check.
func (b *Balancer) startHealth(m *backend) {
	h := b.cfg.Health
	if h.Interval <= 0 {
		m.state.Store(stateUp)
		return
	}
	m.state.Store(statePending)
	ctx, cancel := context.WithCancel(b.ctx)
	m.stopHealth = cancel
	go b.checkLoop(ctx, m)
}

// checkLoop runs active checks on one member: Fall consecutive failures
// take it down, Rise consecutive passes bring it back (a pending member
// needs one).
func (b *Balancer) checkLoop(ctx context.Context, m *backend) {
	h := b.cfg.Health
	client := &http.Client{
		Timeout: h.Timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: h.Timeout}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	url := "http://" + m.dial + h.Path
	passes, fails := 0, 0
	tick := time.NewTicker(h.Interval)
	defer tick.Stop()
	probe := func() bool { return b.check(ctx, client, url) }
	if h.Kind == CheckTCP {
		d := &net.Dialer{Timeout: h.Timeout}
		probe = func() bool {
			c, err := d.DialContext(ctx, "tcp", m.dial)
			if err != nil {
				return false
			}
			c.Close()
			return true
		}
	}
	for {
		ok := probe()
		if ctx.Err() != nil {
			return
		}
		state := m.state.Load()
		if ok {
			passes, fails = passes+1, 0
			if state == statePending || state == stateDown && passes >= h.Rise {
				if m.state.CompareAndSwap(state, stateUp) {
					b.log.Info("balancer: member up", "member", m.Name)
				}
			}
		} else {
			passes, fails = 0, fails+1
			m.failures[failHealth].Add(1)
			if state == stateUp && fails >= h.Fall {
				if m.state.CompareAndSwap(stateUp, stateDown) {
					b.log.Warn("balancer: member down", "member", m.Name, "failed_checks", fails)
					m.closeIdle(false)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (b *Balancer) check(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "pictl-balancer-check")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode == b.cfg.Health.Status
}
