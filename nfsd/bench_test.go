package nfsd

import (
	"os"
	"strconv"
	"testing"
)

func BenchmarkCreateDirect(b *testing.B) {
	e := newEnv(b)
	if os.Getenv("NOSYNC") != "" {
		e.cfg.NoSyncWrites = true
		e.newServer()
	}
	img := newImage(b)
	e.nodes.set(Node{Name: "pi1", ImageRoot: img}, "127.0.0.1")
	x := e.export("/nodes/pi1")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := x.OpenFile("/tmp/f"+strconv.Itoa(i), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		f.Write([]byte("hello"))
		f.Close()
	}
}
