package tftpd

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/pin/tftp/v3"
)

// OutcomePanic: serving the request panicked. The library runs each
// transfer on a goroutine of its own with no recover, so a panic there
// would end the process: it is caught here, logged with its stack,
// counted (requests_total{outcome="panic"}) and answered with an error.
const OutcomePanic Outcome = "panic"

// serveReadSafe is serveRead with the panic contained to the transfer.
func (s *Server) serveReadSafe(t *transfer, rf io.ReaderFrom, ot tftp.OutgoingTransfer) {
	defer func() {
		if v := recover(); v != nil {
			t.outcome, t.err = OutcomePanic, fmt.Errorf("panic: %v", v)
			s.log.Error("tftp transfer panicked; transfer ended, server goes on",
				"client", t.req.Client.String(), "file", t.raw, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	s.serveRead(t, rf, ot)
}
