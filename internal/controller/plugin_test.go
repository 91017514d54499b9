package controller

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/cluster"
)

// fakeSighter is a component that saw every node at one address.
type fakeSighter struct {
	name string
	s    Sighting
}

func (f fakeSighter) Name() string                  { return f.name }
func (f fakeSighter) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f fakeSighter) NodeSighting(string, *cluster.Node) (Sighting, bool) {
	return f.s, f.s.Addr.IsValid()
}

// One answer to "where is node X": a lease of ours beats any fresher
// request source; without one the freshest sighting wins; without any,
// the reservation.
func TestNodeAddress(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := netip.MustParseAddr
	lease := Sighting{Addr: a("10.0.0.100"), At: t0, Leased: true}
	tftpOld := Sighting{Addr: a("10.0.0.5"), At: t0.Add(time.Minute)}
	nfsNew := Sighting{Addr: a("10.0.0.6"), At: t0.Add(2 * time.Minute)}
	for _, tc := range []struct {
		name    string
		sources []Sighting
		node    string
		want    string
	}{
		{name: "lease beats fresher requests", sources: []Sighting{tftpOld, lease, nfsNew}, node: "pi3", want: "10.0.0.100"},
		{name: "freshest request without a lease", sources: []Sighting{nfsNew, tftpOld}, node: "pi3", want: "10.0.0.6"},
		{name: "reservation when never seen", node: "pi4", want: "10.99.0.14"},
		{name: "nothing known", node: "pi3", want: "invalid IP"},
		{name: "unknown node", sources: []Sighting{lease}, node: "pi9", want: "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := newTestController(t)
			defer c.db.Close()
			addNode(t, c, "pi3", "dc:a6:32:01:36:c2")
			cl, err := c.cfg.Store.Update(func(d *cluster.Document) error {
				return d.Set(map[string]any{"mac": "dc:a6:32:01:36:c4", "ip": "10.99.0.14"}, "nodes", "pi4")
			})
			if err != nil {
				t.Fatal(err)
			}
			c.current.Store(cl)
			for i, s := range tc.sources {
				c.Register(fakeSighter{name: string(rune('a' + i)), s: s})
			}
			if got := c.NodeAddress(tc.node).String(); got != tc.want {
				t.Errorf("NodeAddress(%s) = %s, want %s", tc.node, got, tc.want)
			}
		})
	}
}
