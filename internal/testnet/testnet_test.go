package testnet

import (
	"io"
	"net"
	"strings"
	"testing"
)

// A namespace pair joined by a veth through a bridge passes traffic, and a
// socket opened inside Do stays in its namespace.
func TestVethAndDo(t *testing.T) {
	a, b := New(t, "a"), New(t, "b")
	a.Bridge("br0", "10.99.0.1/24")
	a.Veth("v0", "br0", b, "eth0", "10.99.0.2/24")
	var l net.Listener
	if err := a.Do(func() (err error) { l, err = net.Listen("tcp", "10.99.0.1:9999"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = io.WriteString(c, "hi")
			c.Close()
		}
	}()
	if out := b.MustExec("busybox", "nc", "10.99.0.1", "9999"); !strings.Contains(out, "hi") {
		t.Fatalf("got %q from the listener inside netns %s", out, a.Name)
	}
}
