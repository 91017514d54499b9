package balancer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// The TLS listener terminates TLS with net/http's server, which speaks
// HTTP/1.1 and HTTP/2 (ALPN), and forwards each request to the same
// members, with the same picking, sticky cookie, retries, passive ejection
// and counters as the plain listener. The member side is HTTP/1.1 with
// pooled keep-alive connections (net/http's Transport). It costs more CPU
// per request than the hand-written HTTP/1.1 path, as TLS itself does.

// ServeTLS accepts TLS connections on ln until ctx ends, then shuts down
// gracefully (up to DrainTimeout). conf carries the certificate; "h2" and
// "http/1.1" are offered unless conf.NextProtos says otherwise.
func (b *Balancer) ServeTLS(ctx context.Context, ln net.Listener, conf *tls.Config) error {
	if b.cfg.Mode != ModeHTTP {
		return errors.New("balancer: a TLS listener needs mode http")
	}
	conf = conf.Clone()
	if len(conf.NextProtos) == 0 {
		conf.NextProtos = []string{"h2", "http/1.1"}
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(b.serveStd),
		ReadHeaderTimeout: b.cfg.ReadHeaderTimeout,
		IdleTimeout:       b.cfg.IdleTimeout,
		MaxHeaderBytes:    b.cfg.MaxHeaderBytes,
		// TLS handshake failures and the like, at debug level.
		ErrorLog: slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	err := srv.Serve(tls.NewListener(&limitListener{Listener: ln, b: b}, conf))
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("balancer tls: %w", err)
}

// limitListener applies the connection limits of the plain listener.
type limitListener struct {
	net.Listener
	b *Balancer
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		key := remoteKey(tc)
		if !l.b.conns.acquire(key, l.b.cfg.MaxConns, l.b.cfg.MaxConnsPerClient) {
			tc.Close()
			continue
		}
		return &limitedConn{TCPConn: tc, release: func() { l.b.conns.release(key) }}, nil
	}
}

type limitedConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.TCPConn.Close()
}

// stdTransport is the member side of the TLS listener, made on first use.
func (b *Balancer) stdTransport() *http.Transport {
	b.stdOnce.Do(func() {
		b.std.Store(&http.Transport{
			DialContext:           b.dialer.DialContext,
			MaxIdleConnsPerHost:   b.cfg.MaxIdlePerMember,
			IdleConnTimeout:       b.cfg.MemberIdleTimeout,
			ResponseHeaderTimeout: b.cfg.ResponseHeaderTimeout,
			DisableCompression:    true,
			ForceAttemptHTTP2:     false,
		})
	})
	return b.std.Load()
}

// stdAttempt is the outcome of one try of a request on a member.
type stdAttempt struct {
	err    error // the member failed before the response head
	status int
}

// serveStd forwards one request that came over TLS.
func (b *Balancer) serveStd(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var sticky []byte
	if name := b.cfg.StickyCookie; name != "" {
		if c, err := r.Cookie(name); err == nil {
			sticky = []byte(c.Value)
		}
	}
	// A request without a body can go to another member whenever the
	// first failed before answering; with one, only if the body was
	// never read (the member could not be reached).
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	var skip []*backend
	for attempt := 0; ; attempt++ {
		m := b.pick(sticky, skip, time.Now().UnixNano())
		if m == nil {
			w.Header().Set("Retry-After", strconv.Itoa(int((b.cfg.RetryAfter+time.Second-1)/time.Second)))
			http.Error(w, "no healthy member", http.StatusServiceUnavailable)
			return
		}
		m.inflight.Add(1)
		out := b.forwardStd(w, r, m, len(sticky) > 0 && string(sticky) == m.Name)
		m.done()
		if out.err == nil {
			m.requests.Add(1)
			if out.status > 0 && out.status < len(m.codes) {
				m.codes[out.status].Add(1)
			}
			m.latency.observe(time.Since(start))
			if out.status >= 500 {
				m.recordFailure(fail5xx, b.passive, time.Now().UnixNano())
			} else {
				m.recordSuccess(out.status)
			}
			return
		}
		var op *net.OpError
		dialFailed := errors.As(out.err, &op) && op.Op == "dial"
		kind := failReset
		if dialFailed {
			kind = failConnect
		} else if errors.Is(out.err, context.DeadlineExceeded) {
			kind = failTimeout
		}
		if r.Context().Err() != nil {
			return // the client went away
		}
		m.recordFailure(kind, b.passive, time.Now().UnixNano())
		skip = append(skip, m)
		retry := attempt < b.cfg.Retries && (dialFailed || !hasBody && idempotent([]byte(r.Method)))
		if !retry {
			m.codes[502].Add(1)
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
	}
}

// forwardStd sends r to m with httputil.ReverseProxy (hop-by-hop headers,
// Upgrade, trailers, streaming) and says how it went. A failure before the
// response head leaves w untouched, so the caller may try elsewhere.
func (b *Balancer) forwardStd(w http.ResponseWriter, r *http.Request, m *backend, stickyHit bool) stdAttempt {
	var res stdAttempt
	target := &url.URL{Scheme: "http", Host: m.dial}
	rp := &httputil.ReverseProxy{
		Transport: b.stdTransport(),
		// Stream as it comes, as the plain listener does.
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = r.Host // the client's Host, as the plain listener keeps it
			pr.SetXForwarded()   // For (appended), Host, Proto https
			via := "2.0 pictl"
			if r.ProtoMajor == 1 {
				via = fmt.Sprintf("%d.%d pictl", r.ProtoMajor, r.ProtoMinor)
			}
			if prior := r.Header.Get("Via"); prior != "" {
				via = prior + ", " + via
			}
			pr.Out.Header.Set("Via", via)
		},
		ModifyResponse: func(resp *http.Response) error {
			res.status = resp.StatusCode
			if b.cfg.StickyCookie != "" && !stickyHit {
				resp.Header.Add("Set-Cookie", b.cfg.StickyCookie+"="+m.Name+"; Path=/; HttpOnly; Secure")
			}
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) {
			if res.status == 0 {
				res.err = err // nothing written: the caller decides
			}
		},
	}
	rp.ServeHTTP(w, r)
	return res
}
