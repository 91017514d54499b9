package cluster

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// bigCluster is a cluster.yaml with n nodes in the one-line style.
func bigCluster(n int) []byte {
	var b strings.Builder
	b.WriteString("controller: {interfaces: [br0], address: 10.99.0.1/20}\ndhcp: {range: 10.99.8.0-10.99.15.254}\nimages:\n  rpi-os: {arch: arm64}\nnodes:\n")
	for i := range n {
		fmt.Fprintf(&b, "  pi%d: {mac: dc:a6:32:00:%02x:%02x, serial: %08x, image: rpi-os, role: web, ip: 10.99.%d.%d}\n", i, i>>8, i&255, 0x9ffe0000+i, 1+i/250, 1+i%250)
	}
	return []byte(b.String())
}

func BenchmarkLoad500(b *testing.B) {
	data := bigCluster(500)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Load("cluster.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEdit500 is what a pictl role set costs in CPU: parse, edit,
// encode, validate.
func BenchmarkEdit500(b *testing.B) {
	data := bigCluster(500)
	for b.Loop() {
		d, err := ParseDocument("cluster.yaml", data)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Set("db", "nodes", "pi250", "role"); err != nil {
			b.Fatal(err)
		}
		out, err := d.Bytes()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Load("cluster.yaml", out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNodeByMAC500(b *testing.B) {
	c, err := Load("cluster.yaml", bigCluster(500))
	if err != nil {
		b.Fatal(err)
	}
	mac, _ := net.ParseMAC("dc:a6:32:00:01:f3") // pi499
	for b.Loop() {
		if _, _, ok := c.NodeByMAC(mac); !ok {
			b.Fatal("not found")
		}
	}
}
