package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// The exported tree: one 256 MiB file and nFiles small files (0–9.4 KB,
// 4.7 KB on average) in directories of 100, about 350 MB in all; generated
// once, deterministically, and reused while its manifest matches.
const (
	bigName  = "big.bin"
	bigSize  = 256 << 20
	perDir   = 100
	maxSmall = 9400
)

func manifest(nFiles int) string {
	return fmt.Sprintf("pictl nfs bench tree v1 files=%d big=%d max=%d\n", nFiles, bigSize, maxSmall)
}

func ensureTree(dir string, nFiles int) (bytes int64, err error) {
	m := filepath.Join(dir, ".manifest")
	if b, err := os.ReadFile(m); err == nil && string(b) == manifest(nFiles) {
		return treeBytes(nFiles), nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewChaCha8([32]byte{'p', 'i', 'c', 't', 'l'}))
	buf := make([]byte, 1<<20)
	fill := func(p []byte) {
		for i := 0; i+8 <= len(p); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				p[i+j] = byte(v >> (8 * j))
			}
		}
	}
	f, err := os.Create(filepath.Join(dir, bigName))
	if err != nil {
		return 0, err
	}
	for w := 0; w < bigSize; w += len(buf) {
		fill(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	sizes := smallSizes(nFiles)
	for i, sz := range sizes {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i/perDir))
		if i%perDir == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return 0, err
			}
		}
		fill(buf[:(sz+7)&^7])
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i%perDir)), buf[:sz], 0o644); err != nil {
			return 0, err
		}
	}
	if err := os.WriteFile(m, []byte(manifest(nFiles)), 0o644); err != nil {
		return 0, err
	}
	return treeBytes(nFiles), nil
}

func smallSizes(n int) []int {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]int, n)
	for i := range out {
		out[i] = r.IntN(maxSmall + 1)
	}
	return out
}

func treeBytes(n int) int64 {
	t := int64(bigSize)
	for _, s := range smallSizes(n) {
		t += int64(s)
	}
	return t
}

// removeWrites deletes what an untar phase left in the tree.
func removeWrites(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "untar-") {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
