package store

import (
	"testing"

	"github.com/pictl/pictl/internal/cluster"
)

// BenchmarkUpdate is one pictl role set on a small file: lock, read,
// edit, validate, write a temp file, fsync, rename, fsync the directory.
func BenchmarkUpdate(b *testing.B) {
	dir := b.TempDir()
	s := New(dir + "/cluster.yaml")
	if err := s.Create([]byte(baseYAML)); err != nil {
		b.Fatal(err)
	}
	roles := []string{"web", "db"}
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Update(func(d *cluster.Document) error { return d.Set(roles[i%2], "nodes", "pi1", "role") }); err != nil {
			b.Fatal(err)
		}
	}
}
