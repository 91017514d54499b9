package tftpd

import (
	"net/netip"
	"testing"
)

// A panic while serving one request is contained: the client gets an
// error, the panic is counted, and the next client is served (issue 18).
func TestPanicContained(t *testing.T) {
	h := newHarness(t, nil)
	h.nodes.mu.Lock()
	h.nodes.panicIP = netip.MustParseAddr("127.0.0.77")
	h.nodes.mu.Unlock()
	res, err := h.client("127.0.0.77").get("config.txt", rawOpts{})
	if err != nil || res.errCode < 0 {
		t.Fatalf("panicking request: err %v, error code %d (want a TFTP ERROR)", err, res.errCode)
	}
	h.settle()
	if got := h.count(OutcomePanic); got != 1 {
		t.Errorf("panics counted %d, want 1", got)
	}
	res, err = h.client("127.0.0.3").get("config.txt", rawOpts{})
	if err != nil || res.errCode != -1 || len(res.data) == 0 {
		t.Fatalf("next client: err %v, error code %d, %d bytes", err, res.errCode, len(res.data))
	}
}
