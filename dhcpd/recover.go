package dhcpd

import (
	"context"
	"fmt"
	"runtime/debug"
)

// One packet must never stop the server: a panic while handling a packet
// or sending replies is logged with its stack, counted in
// pictl_dhcpd_panics_total{where}, and the packet is dropped; the reader
// goes on with the next one.

// processSafe is process with the panic contained.
func (s *Server) processSafe(ctx context.Context, c *dhcpConn, in *packetIn) (rep *reply) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked("packet", v, "src", in.src.String())
			rep = nil
		}
	}()
	return s.process(ctx, c, in)
}

// send is sendBatch with the panic contained.
func (s *Server) send(c *dhcpConn, reps []*reply) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked("send", v, "replies", len(reps))
		}
	}()
	s.sendBatch(c, reps)
}

func (s *Server) panicked(where string, v any, attrs ...any) {
	s.metrics.panics.WithLabelValues(where).Inc()
	s.log.Error("dhcp handling panicked; packet dropped, server goes on",
		append([]any{"where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack())}, attrs...)...)
}
