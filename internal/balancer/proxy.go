package balancer

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is the per-connection state of the HTTP proxy, pooled so a
// new connection allocates nothing once the pool is warm.
type clientConn struct {
	c      *net.TCPConn
	br     *bufio.Reader
	bw     *bufio.Writer // only for chunked bodies
	req    head
	resp   head
	out    []byte // the head (and small body) written in one syscall
	xff    []byte // collected X-Forwarded-For of this request
	ip     []byte // client address text, for X-Forwarded-For
	skip   []*backend
	idle   atomic.Bool
	closed atomic.Bool
}

func (b *Balancer) getClientConn(c *net.TCPConn) *clientConn {
	cc, _ := b.pools.Get().(*clientConn)
	if cc == nil {
		cc = &clientConn{
			br:  bufio.NewReaderSize(nil, 4096),
			bw:  bufio.NewWriterSize(nil, 4096),
			out: make([]byte, 0, 4096),
		}
		cc.req.buf = make([]byte, 0, 1024)
		cc.resp.buf = make([]byte, 0, 1024)
	}
	cc.c = c
	cc.br.Reset(c)
	cc.bw.Reset(c)
	cc.ip = cc.ip[:0]
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cc.ip = a.AddrPort().Addr().Unmap().AppendTo(cc.ip)
	}
	cc.idle.Store(false)
	cc.closed.Store(false)
	return cc
}

func (b *Balancer) putClientConn(cc *clientConn) {
	cc.c = nil
	cc.br.Reset(nil)
	cc.bw.Reset(nil)
	if cap(cc.req.buf) > 64<<10 || cap(cc.out) > 64<<10 {
		return // an outsized request: let it go
	}
	b.pools.Put(cc)
}

// connTracker knows the client connections of one listener so shutdown
// can close the idle ones and let busy ones finish their response.
type connTracker struct {
	mu      sync.Mutex
	conns   map[*clientConn]struct{}
	closing atomic.Bool
}

func newConnTracker() *connTracker {
	return &connTracker{conns: map[*clientConn]struct{}{}}
}

func (t *connTracker) add(cc *clientConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing.Load() {
		return false
	}
	t.conns[cc] = struct{}{}
	return true
}

func (t *connTracker) remove(cc *clientConn) {
	t.mu.Lock()
	delete(t.conns, cc)
	t.mu.Unlock()
}

func (t *connTracker) shutdown() {
	t.mu.Lock()
	t.closing.Store(true)
	for cc := range t.conns {
		if cc.idle.Load() {
			cc.closed.Store(true)
			cc.c.Close()
		}
	}
	t.mu.Unlock()
}

func (t *connTracker) closeAll() {
	t.mu.Lock()
	for cc := range t.conns {
		cc.closed.Store(true)
		cc.c.Close()
	}
	t.mu.Unlock()
}

// serveHTTP runs one client connection: read a request head, forward it,
// relay the response, repeat while both sides keep the connection alive.
func (b *Balancer) serveHTTP(t *connTracker, c *net.TCPConn) {
	cc := b.getClientConn(c)
	defer b.putClientConn(cc)
	defer c.Close()
	if !t.add(cc) {
		return
	}
	defer t.remove(cc)
	for {
		if cc.br.Buffered() == 0 {
			cc.idle.Store(true)
			if t.closing.Load() {
				return
			}
			c.SetReadDeadline(time.Now().Add(b.cfg.IdleTimeout))
			_, err := cc.br.Peek(1)
			cc.idle.Store(false)
			if err != nil || cc.closed.Load() {
				return
			}
		}
		c.SetReadDeadline(time.Now().Add(b.cfg.ReadHeaderTimeout))
		if err := cc.req.parseRequest(cc.br, b.cfg.MaxHeaderBytes); err != nil {
			b.refuse(cc, err)
			return
		}
		if !b.forward(cc) || t.closing.Load() {
			return
		}
	}
}

// refuse answers a request the parser rejected, then the connection closes.
func (b *Balancer) refuse(cc *clientConn, err error) {
	var msg string
	switch {
	case errors.Is(err, errHeaderTooLarge):
		msg = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	case errors.Is(err, errBadRequest):
		msg = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	default:
		return // timeout, reset or EOF: nobody to answer
	}
	b.log.Debug("balancer: request refused", "client", string(cc.ip), "err", err)
	cc.c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(cc.c, msg)
}

func (b *Balancer) overLimit(c *net.TCPConn) {
	if b.cfg.Mode == ModeHTTP {
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
	}
	c.Close()
}

func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// attemptError says how far a failed attempt got, which decides whether
// the request may go to another member.
type attemptError struct {
	kind       int  // failConnect, failReset, ...
	reached    bool // bytes of the request may have reached the member
	clientSide bool // the client failed, not the member: no answer possible
	err        error
}

func (e *attemptError) Error() string { return failNames[e.kind] + ": " + e.err.Error() }

// forward proxies one parsed request and reports whether the client
// connection stays open.
func (b *Balancer) forward(cc *clientConn) bool {
	req := &cc.req
	start := time.Now()
	now := start.UnixNano()
	sticky := b.stickyValue(req)
	hasBody := req.chunked || req.contentLength > 0
	// A body still in the read buffer can be sent again; a streamed one
	// cannot, so such a request gets one attempt once its body moved.
	replayable := !hasBody || (!req.chunked && req.contentLength <= int64(cc.br.Size()))
	if req.expectContinue && hasBody {
		// Answer 100 ourselves (as nginx does): the member never sees
		// Expect, so it cannot stall waiting for the body we hold.
		if _, err := io.WriteString(cc.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return false
		}
	}
	if replayable && req.contentLength > 0 && int64(cc.br.Buffered()) < req.contentLength {
		cc.c.SetReadDeadline(time.Now().Add(b.cfg.IdleTimeout))
		if _, err := cc.br.Peek(int(req.contentLength)); err != nil {
			return false
		}
	}
	cc.skip = cc.skip[:0]
	for attempt := 0; ; attempt++ {
		m := b.pick(sticky, cc.skip, now)
		if m == nil {
			return b.noMember(cc, hasBody)
		}
		m.inflight.Add(1)
		keep, aerr := b.attempt(cc, m, len(sticky) > 0 && string(sticky) == m.Name, start)
		m.done()
		if aerr == nil {
			return keep
		}
		if aerr.clientSide {
			return false
		}
		m.recordFailure(aerr.kind, b.passive, time.Now().UnixNano())
		b.log.Debug("balancer: attempt failed", "member", m.Name, "err", aerr)
		cc.skip = append(cc.skip, m)
		// Never reached a member: any request may go elsewhere (its body,
		// if streamed, was not touched yet). Reached: only idempotent
		// ones, and only with the body still at hand.
		retry := attempt < b.cfg.Retries &&
			(!aerr.reached || replayable && idempotent(req.method))
		if !retry {
			m.codes[502].Add(1)
			bodyConsumed := !hasBody
			if replayable && req.contentLength > 0 && int64(cc.br.Buffered()) >= req.contentLength {
				cc.br.Discard(int(req.contentLength)) // still buffered: drop it, keep the connection
				bodyConsumed = true
			}
			return b.writeStatus(cc, "502 Bad Gateway", bodyConsumed)
		}
	}
}

// noMember answers 503 at once when no member can take the request.
func (b *Balancer) noMember(cc *clientConn, unreadBody bool) bool {
	cc.out = append(cc.out[:0], "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: "...)
	cc.out = strconv.AppendInt(cc.out, int64((b.cfg.RetryAfter+time.Second-1)/time.Second), 10)
	keep := cc.req.keepAlive() && !unreadBody
	if !keep {
		cc.out = append(cc.out, "\r\nConnection: close"...)
	}
	cc.out = append(cc.out, "\r\n\r\n"...)
	_, err := cc.c.Write(cc.out)
	return err == nil && keep
}

func (b *Balancer) writeStatus(cc *clientConn, status string, keepPossible bool) bool {
	keep := keepPossible && cc.req.keepAlive()
	cc.out = append(cc.out[:0], "HTTP/1.1 "...)
	cc.out = append(cc.out, status...)
	cc.out = append(cc.out, "\r\nContent-Length: 0\r\n"...)
	if !keep {
		cc.out = append(cc.out, "Connection: close\r\n"...)
	}
	cc.out = append(cc.out, "\r\n"...)
	_, err := cc.c.Write(cc.out)
	return err == nil && keep
}

// stickyValue returns the sticky cookie's value, if the request has one.
func (b *Balancer) stickyValue(req *head) []byte {
	name := b.cfg.StickyCookie
	if name == "" {
		return nil
	}
	for _, f := range req.fields {
		if !equalFold(f.name, "cookie") {
			continue
		}
		v := f.value
		for len(v) > 0 {
			var pair []byte
			if i := indexByte(v, ';'); i >= 0 {
				pair, v = v[:i], v[i+1:]
			} else {
				pair, v = v, nil
			}
			pair = trimOWS(pair)
			if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
				return pair[len(name)+1:]
			}
		}
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// attempt sends the request to m and relays the response. An error means
// no byte of the response reached the client.
func (b *Balancer) attempt(cc *clientConn, m *backend, stickyHit bool, start time.Time) (bool, *attemptError) {
	req := &cc.req
	mc, _, err := m.getConn(&b.dialer, b.cfg.MemberIdleTimeout, start.UnixNano())
	if err != nil {
		return false, &attemptError{kind: failConnect, err: err}
	}
	cc.out = b.appendRequestHead(cc.out[:0], cc, m)
	bodyInOut := false
	if req.contentLength > 0 && int64(cc.br.Buffered()) >= req.contentLength {
		body, _ := cc.br.Peek(int(req.contentLength))
		cc.out = append(cc.out, body...)
		bodyInOut = true
	}
	n, err := mc.c.Write(cc.out)
	if err != nil {
		mc.c.Close()
		// Nothing written: the member never saw this request.
		return false, &attemptError{kind: failReset, reached: n > 0, err: err}
	}
	if !bodyInOut && (req.contentLength > 0 || req.chunked) {
		if aerr := b.copyRequestBody(cc, mc); aerr != nil {
			mc.c.Close()
			return false, aerr
		}
	}
	mc.c.SetReadDeadline(time.Now().Add(b.cfg.ResponseHeaderTimeout))
	resp := &cc.resp
	for {
		if err := resp.parseResponse(mc.br, 64<<10); err != nil {
			mc.c.Close()
			kind := failReset
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				kind = failTimeout
			case errors.Is(err, errBadRequest), errors.Is(err, errHeaderTooLarge):
				kind = failProtocol
			}
			return false, &attemptError{kind: kind, reached: true, err: err}
		}
		if bodyInOut {
			// The member answered: no retry will need the body again.
			cc.br.Discard(int(req.contentLength))
			bodyInOut = false
		}
		if resp.status >= 200 || resp.status == 101 {
			break
		}
		// Interim response (but 100 we already answered ourselves):
		// relay it and read on.
		cc.out = appendResponseHead(cc.out[:0], resp, true, false, nil)
		if _, err := cc.c.Write(cc.out); err != nil {
			mc.c.Close()
			return false, &attemptError{kind: failReset, reached: true, clientSide: true, err: err}
		}
	}
	keep, clientErr := b.relayResponse(cc, mc, m, stickyHit)
	status := resp.status
	m.requests.Add(1)
	m.codes[status].Add(1)
	m.latency.observe(time.Since(start))
	if status >= 500 {
		m.recordFailure(fail5xx, b.passive, time.Now().UnixNano())
	} else {
		m.recordSuccess(status)
	}
	if clientErr {
		return false, nil
	}
	return keep, nil
}

// copyRequestBody streams a body that was not in the read buffer.
func (b *Balancer) copyRequestBody(cc *clientConn, mc *memberConn) *attemptError {
	req := &cc.req
	if req.chunked {
		d := bodyDeadlines{src: cc.c, dst: mc.c, idle: b.cfg.BodyIdleTimeout}
		defer d.clear()
		bw := b.getWriter(mc.c)
		err := copyChunked(bw, cc.br, false, d.push)
		b.putWriter(bw)
		if err != nil {
			return &attemptError{kind: failReset, reached: true, clientSide: isReadSide(err), err: err}
		}
		return nil
	}
	// Buffered part first, then the rest straight from the socket, where
	// TCPConn.ReadFrom splices.
	rest := req.contentLength
	if n := cc.br.Buffered(); n > 0 {
		p, _ := cc.br.Peek(int(min(int64(n), rest)))
		if _, err := mc.c.Write(p); err != nil {
			return &attemptError{kind: failReset, reached: true, err: err}
		}
		cc.br.Discard(len(p))
		rest -= int64(len(p))
	}
	if rest > 0 {
		n, err := idleCopy(cc.c, mc.c, rest, b.cfg.BodyIdleTimeout)
		if err == nil && n < rest {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return &attemptError{kind: failReset, reached: true, clientSide: n < rest, err: err}
		}
	}
	return nil
}

// readSideError marks errors from the reading side of a copy.
type readSideError struct{ err error }

func (e readSideError) Error() string { return e.err.Error() }
func (e readSideError) Unwrap() error { return e.err }

func isReadSide(err error) bool {
	var r readSideError
	return errors.As(err, &r)
}

// relayResponse sends the parsed response head and its body to the client.
// It returns whether the client connection stays open and whether the
// client, not the member, failed.
func (b *Balancer) relayResponse(cc *clientConn, mc *memberConn, m *backend, stickyHit bool) (keep, clientErr bool) {
	req, resp := &cc.req, &cc.resp
	var setCookie string
	if b.cfg.StickyCookie != "" && !stickyHit {
		setCookie = m.Name
	}
	if resp.status == 101 {
		if !req.connUpgrade || len(req.upgrade) == 0 {
			mc.c.Close()
			return false, false
		}
		cc.out = appendResponseHead(cc.out[:0], resp, true, false, nil)
		cc.out = append(cc.out, "Connection: Upgrade\r\nUpgrade: "...)
		cc.out = append(cc.out, resp.upgrade...)
		cc.out = append(cc.out, "\r\n\r\n"...)
		if _, err := cc.c.Write(cc.out); err != nil {
			mc.c.Close()
			return false, true
		}
		b.tunnel(cc, mc)
		return false, false
	}
	noBody := string(req.method) == "HEAD" || resp.status == 204 || resp.status == 304 || resp.status < 200
	memberKeep := resp.keepAlive()
	clientKeep := req.keepAlive()
	chunkedOut := false
	switch {
	case noBody, resp.contentLength >= 0:
	case resp.chunked:
		if req.minor >= 1 {
			chunkedOut = true
		} else {
			clientKeep = false // HTTP/1.0 client: decode, end by closing
		}
	default:
		// Delimited by the member closing: so is ours.
		memberKeep, clientKeep = false, false
	}
	cc.out = appendResponseHead(cc.out[:0], resp, clientKeep, req.minor == 0 && clientKeep, stickyCookie(b.cfg.StickyCookie, setCookie))
	if chunkedOut {
		cc.out = append(cc.out, "Transfer-Encoding: chunked\r\n"...)
	}
	cc.out = append(cc.out, "\r\n"...)

	if noBody {
		if _, err := cc.c.Write(cc.out); err != nil {
			mc.c.Close()
			return false, true
		}
		b.finishMember(m, mc, memberKeep)
		return clientKeep, false
	}
	if resp.contentLength >= 0 {
		// Head and whatever of the body is buffered in one write, the
		// rest spliced socket to socket.
		rest := resp.contentLength
		if n := int64(mc.br.Buffered()); n > 0 {
			p, _ := mc.br.Peek(int(min(n, rest)))
			cc.out = append(cc.out, p...)
			mc.br.Discard(len(p))
			rest -= int64(len(p))
		}
		if rest > 0 {
			mc.c.SetReadDeadline(time.Time{})
		}
		if _, err := cc.c.Write(cc.out); err != nil {
			mc.c.Close()
			return false, true
		}
		if rest > 0 {
			n, err := idleCopy(mc.c, cc.c, rest, b.cfg.BodyIdleTimeout)
			if err != nil || n < rest {
				// Either side failed mid-body: the client has part of
				// it and must see the connection end.
				mc.c.Close()
				return false, true
			}
		}
		b.finishMember(m, mc, memberKeep)
		return clientKeep, false
	}
	d := bodyDeadlines{src: mc.c, dst: cc.c, idle: b.cfg.BodyIdleTimeout}
	defer d.clear()
	d.push()
	cc.bw.Write(cc.out)
	var err error
	if resp.chunked {
		err = copyChunked(cc.bw, mc.br, !chunkedOut, d.push)
		if err == nil {
			err = cc.bw.Flush()
		}
	} else {
		if err = cc.bw.Flush(); err == nil {
			if n := mc.br.Buffered(); n > 0 {
				p, _ := mc.br.Peek(n)
				_, err = cc.c.Write(p)
				mc.br.Discard(n)
			}
			if err == nil {
				_, err = idleCopy(mc.c, cc.c, -1, b.cfg.BodyIdleTimeout)
			}
		}
	}
	if err != nil {
		mc.c.Close()
		return false, !isReadSide(err)
	}
	b.finishMember(m, mc, memberKeep)
	return clientKeep, false
}

func stickyCookie(name, value string) []byte {
	if value == "" {
		return nil
	}
	return []byte("Set-Cookie: " + name + "=" + value + "; Path=/; HttpOnly\r\n")
}

func (b *Balancer) finishMember(m *backend, mc *memberConn, keep bool) {
	if !keep {
		mc.c.Close()
		return
	}
	m.putConn(mc, b.cfg.MaxIdlePerMember, time.Now().UnixNano())
}

// tunnel joins client and member after a 101, both ways, until both
// directions end.
func (b *Balancer) tunnel(cc *clientConn, mc *memberConn) {
	cc.c.SetWriteDeadline(time.Time{})
	if n := cc.br.Buffered(); n > 0 {
		p, _ := cc.br.Peek(n)
		mc.c.Write(p)
		cc.br.Discard(n)
	}
	if n := mc.br.Buffered(); n > 0 {
		p, _ := mc.br.Peek(n)
		cc.c.Write(p)
		mc.br.Discard(n)
	}
	joinIdle(cc.c, mc.c, b.cfg.TunnelIdleTimeout)
	mc.c.Close()
}

// joinIdle copies both ways between a and b until both directions end, or
// one fails or the tunnel stays quiet both ways for idle: then both
// connections are closed, which also ends the other direction.
func joinIdle(a, b *net.TCPConn, idle time.Duration) {
	var quiet [2]atomic.Bool
	half := func(src, dst *net.TCPConn, me int) {
		if err := tunnelHalf(src, dst, idle, &quiet, me); err != nil {
			a.Close()
			b.Close()
			return
		}
		dst.CloseWrite()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		half(a, b, 0)
	}()
	half(b, a, 1)
	<-done
}

// hop-by-hop headers (RFC 9110 7.6.1) plus the ones the proxy sets itself.
func dropRequestField(name []byte, req *head) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 3:
		return equalFold(name, "via")
	case 6:
		return equalFold(name, "expect")
	case 7:
		return equalFold(name, "upgrade") || equalFold(name, "trailer")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 15:
		return equalFold(name, "x-forwarded-for")
	case 16:
		return equalFold(name, "proxy-connection") || equalFold(name, "x-forwarded-host")
	case 17:
		return equalFold(name, "transfer-encoding") || equalFold(name, "x-forwarded-proto")
	case 19:
		return equalFold(name, "proxy-authorization")
	}
	return inTokens(name, req.connTokens)
}

func dropResponseField(name []byte, resp *head) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 7:
		return equalFold(name, "upgrade") || equalFold(name, "trailer")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 16:
		return equalFold(name, "proxy-connection")
	case 17:
		return equalFold(name, "transfer-encoding")
	case 18:
		return equalFold(name, "proxy-authenticate")
	}
	return inTokens(name, resp.connTokens)
}

func inTokens(name []byte, toks [][]byte) bool {
	for _, t := range toks {
		if len(t) == len(name) && equalFoldBytes(name, t) {
			return true
		}
	}
	return false
}

func equalFoldBytes(a, b []byte) bool {
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// appendRequestHead writes the request as it goes to a member: HTTP/1.1,
// hop-by-hop headers dropped, X-Forwarded-* and Via added.
func (b *Balancer) appendRequestHead(out []byte, cc *clientConn, m *backend) []byte {
	req := &cc.req
	out = append(out, req.method...)
	out = append(out, ' ')
	out = append(out, req.target...)
	out = append(out, " HTTP/1.1\r\n"...)
	cc.xff = cc.xff[:0]
	var via []byte
	for _, f := range req.fields {
		if dropRequestField(f.name, req) {
			switch {
			case equalFold(f.name, "x-forwarded-for"):
				cc.xff = append(cc.xff, f.value...)
				cc.xff = append(cc.xff, ", "...)
			case equalFold(f.name, "via"):
				via = f.value
			}
			continue
		}
		out = append(out, f.name...)
		out = append(out, ": "...)
		out = append(out, f.value...)
		out = append(out, "\r\n"...)
	}
	if req.host == nil {
		out = append(out, "Host: "...)
		out = append(out, m.dial...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "X-Forwarded-For: "...)
	out = append(out, cc.xff...)
	out = append(out, cc.ip...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\n"...)
	if req.host != nil {
		out = append(out, "X-Forwarded-Host: "...)
		out = append(out, req.host...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Via: "...)
	if via != nil {
		out = append(out, via...)
		out = append(out, ", "...)
	}
	if req.minor == 0 {
		out = append(out, "1.0 pictl\r\n"...)
	} else {
		out = append(out, "1.1 pictl\r\n"...)
	}
	if req.chunked {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if req.connUpgrade && len(req.upgrade) > 0 {
		out = append(out, "Connection: Upgrade\r\nUpgrade: "...)
		out = append(out, req.upgrade...)
		out = append(out, "\r\n"...)
	}
	return append(out, "\r\n"...)
}

// appendResponseHead writes the member's status line and end-to-end
// headers, without the final CRLF.
func appendResponseHead(out []byte, resp *head, keep, sayKeepAlive bool, setCookie []byte) []byte {
	out = append(out, "HTTP/1.1"...)
	out = append(out, resp.line[8:]...)
	out = append(out, "\r\n"...)
	for _, f := range resp.fields {
		if dropResponseField(f.name, resp) {
			continue
		}
		out = append(out, f.name...)
		out = append(out, ": "...)
		out = append(out, f.value...)
		out = append(out, "\r\n"...)
	}
	out = append(out, setCookie...)
	if !keep {
		out = append(out, "Connection: close\r\n"...)
	} else if sayKeepAlive {
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	if resp.status < 200 && resp.status != 101 {
		out = append(out, "\r\n"...)
	}
	return out
}

func (b *Balancer) getWriter(w io.Writer) *bufio.Writer {
	bw, _ := b.writers.Get().(*bufio.Writer)
	if bw == nil {
		return bufio.NewWriterSize(w, 4096)
	}
	bw.Reset(w)
	return bw
}

func (b *Balancer) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	b.writers.Put(bw)
}
