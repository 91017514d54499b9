package tftpd_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pictl/pictl/tftpd"
)

// staticNodes is the smallest Nodes: one node, found by its address.
type staticNodes struct {
	ip   netip.Addr
	node tftpd.Node
}

func (s staticNodes) LookupNode(_ context.Context, key tftpd.NodeKey) (tftpd.Node, bool, error) {
	return s.node, key.IP == s.ip, nil
}

// The controller builds the server from its settings, passes a Nodes
// backed by its current cluster snapshot and a Recorder (StageStore on the
// runtime database), and runs it as a component.
func ExampleNew() {
	nodes := staticNodes{
		ip: netip.MustParseAddr("10.99.0.100"),
		node: tftpd.Node{
			Name: "pi3", Serial: "0a1b2c3d", Netboot: true,
			Image: tftpd.Image{Name: "rpi-os", Kind: tftpd.ImagePi, BootDir: "/var/lib/pictl/images/rpi-os/boot"},
		},
	}
	srv, err := tftpd.New(tftpd.Config{
		Addr:      ":69",
		NFSServer: netip.MustParseAddr("10.99.0.1"),
		NFSPort:   2049,
	}, nodes, nil, slog.New(slog.NewTextHandler(os.Stderr, nil)), prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	_ = srv // srv.Run(ctx) listens and serves until ctx ends.
	// Output:
}
