package nfsd

import (
	"net"
	"sync"
)

// trackedListener counts open connections per client address: go-nfs
// never tells the handler when a client goes away, and "is this node still
// mounted" (Reset) needs to know. The Linux client mounts over one short
// connection and talks NFS over another, so the address, not the
// connection that sent MOUNT, is what counts.
type trackedListener struct {
	net.Listener
	s *Server
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s}
	l.s.addConn(tc)
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.removeConn(c) })
	return c.Conn.Close()
}

func (s *Server) addConn(c *trackedConn) {
	ip := remoteIP(c)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.ipConns[ip]++
	s.mu.Unlock()
	s.metrics.conns.Inc()
}

func (s *Server) removeConn(c *trackedConn) {
	ip := remoteIP(c)
	s.mu.Lock()
	delete(s.conns, c)
	if s.ipConns[ip]--; s.ipConns[ip] <= 0 {
		delete(s.ipConns, ip)
	}
	s.mu.Unlock()
	s.metrics.conns.Dec()
}

func (s *Server) closeConns() {
	s.mu.Lock()
	list := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		c.Close()
	}
}
