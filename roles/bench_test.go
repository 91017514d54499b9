package roles

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkRender100 renders a 100-node cluster's trees (what a
// controller does when a fact every node sees changes), web and db
// alternating.
func BenchmarkRender100(b *testing.B) {
	c, err := LoadCatalog("")
	if err != nil {
		b.Fatal(err)
	}
	f := sampleFacts()
	f.Nodes = nil
	for i := range 100 {
		role := "web"
		if i%2 == 1 {
			role = "db"
		}
		f.Nodes = append(f.Nodes, Node{Name: fmt.Sprintf("pi%03d", i), Addr: netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + i)}), Role: role})
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range f.Nodes {
			tr, err := c.Render(n, f)
			if err != nil {
				b.Fatal(err)
			}
			_ = tr.Hash()
		}
	}
}

func BenchmarkLoadCatalog(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadCatalog(""); err != nil {
			b.Fatal(err)
		}
	}
}
