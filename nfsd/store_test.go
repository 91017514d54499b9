package nfsd

import "testing"

// Export numbers are what handles name exports by: they must survive a
// restart and never be given to two exports.
func TestExportNumbersPersist(t *testing.T) {
	e, _ := nodeEnv(t)
	x1 := e.export("/nodes/pi1")
	e.restart("")
	y, err := e.srv.exportByNumber(x1.number)
	if err != nil || y.name != "/nodes/pi1" {
		t.Fatalf("by number after restart: %v %v", y, err)
	}
	x2 := e.export("/nodes/pi2")
	if x2.number == x1.number {
		t.Fatalf("pi2 got pi1's export number %d", x1.number)
	}
	e.restart("")
	if x := e.export("/nodes/pi2"); x.number != x2.number {
		t.Fatalf("pi2's number changed: %d -> %d", x2.number, x.number)
	}
}
