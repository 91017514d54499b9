package controller

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/pictl/pictl/dhcpd"
	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/tftpd"
)

// The boot servers as components: each server package knows nothing of
// cluster.yaml or the API, so these adapters translate both ways.

// dhcpComponent: settings follow cluster.yaml, leases are facts and the
// best answer to where a node is, unknown clients are the discovered list.
type dhcpComponent struct {
	*dhcpd.Server // Name, Run, Listen, Serve
	log           *slog.Logger
}

func (d dhcpComponent) Reload(_ context.Context, cl *cluster.Cluster) error {
	err := d.Reconfigure(dhcpConfig(cl))
	if errors.Is(err, dhcpd.ErrRestartRequired) {
		d.log.Warn("dhcp settings changed that need a restart of pictl serve (interfaces, mode or ports)")
		return nil
	}
	if err != nil {
		d.log.Error("dhcp settings rejected; keeping the old ones", "err", err)
	}
	return nil
}

// lease is the node's lease, by any of its MACs.
func (d dhcpComponent) lease(n *cluster.Node) (dhcpd.Lease, bool) {
	for _, mac := range n.MACs {
		if l, ok, _ := d.Store().LeaseByMAC(mac); ok {
			return l, true
		}
	}
	return dhcpd.Lease{}, false
}

func (d dhcpComponent) NodeFacts(_ context.Context, _ string, n *cluster.Node, into *api.NodeRuntime) {
	if l, ok := d.lease(n); ok {
		into.LeaseIP = l.IP.String()
		into.LeaseExpires = l.Expires
		into.LastSeen = later(into.LastSeen, l.Granted)
	}
}

func (d dhcpComponent) NodeSighting(_ string, n *cluster.Node) (Sighting, bool) {
	l, ok := d.lease(n)
	if !ok {
		return Sighting{}, false
	}
	return Sighting{Addr: l.IP, At: l.Granted, Leased: true}, true
}

func (d dhcpComponent) Discovered(cl *cluster.Cluster) ([]api.Discovered, error) {
	list, err := d.Store().Discovered()
	if err != nil {
		return nil, err
	}
	out := make([]api.Discovered, 0, len(list))
	for _, x := range list {
		if _, _, known := cl.NodeByMAC(x.MAC); known {
			continue // adopted since it was recorded
		}
		out = append(out, api.Discovered{
			MAC: x.MAC.String(), Serial: x.Serial, Model: x.Class.String(),
			Interface: x.Interface, FirstSeen: x.FirstSeen, LastSeen: x.LastSeen,
		})
	}
	return out, nil
}

// tftpComponent: the boot stages tftpd records are facts, and the client
// address of the last stage is a sighting.
type tftpComponent struct {
	*tftpd.Server // Name, Run, Listen, Serve
	stages        *tftpd.StageStore
}

func (t tftpComponent) NodeFacts(_ context.Context, name string, _ *cluster.Node, into *api.NodeRuntime) {
	if ev, ok, _ := t.stages.LastStage(name); ok {
		into.BootStage = string(ev.Stage)
		into.BootStageAt = ev.At
		into.LastSeen = later(into.LastSeen, ev.At)
	}
}

func (t tftpComponent) NodeSighting(name string, _ *cluster.Node) (Sighting, bool) {
	ev, ok, _ := t.stages.LastStage(name)
	if !ok {
		return Sighting{}, false
	}
	a, err := netip.ParseAddr(ev.Client)
	if err != nil {
		return Sighting{}, false
	}
	return Sighting{Addr: a.Unmap(), At: ev.At}, true
}

// nfsComponent: a mounted root means the node got past the kernel; its
// last request's source is a sighting. Reset and Exports make it the
// layerResetter node reset uses.
type nfsComponent struct {
	*nfsd.Server
}

func (nfsComponent) Name() string                    { return "nfsd" }
func (n nfsComponent) Run(ctx context.Context) error { return n.Serve(ctx) }

// export is the node's root export, if a client has opened it.
func (n nfsComponent) export(name string) (nfsd.ExportStatus, bool) {
	for _, x := range n.Exports() {
		if x.Name == name && x.Path == "/nodes/"+name {
			return x, true
		}
	}
	return nfsd.ExportStatus{}, false
}

func (n nfsComponent) NodeFacts(_ context.Context, name string, _ *cluster.Node, into *api.NodeRuntime) {
	x, ok := n.export(name)
	if !ok {
		return
	}
	if !x.LastRequest.IsZero() && x.Mounts > 0 {
		into.BootStage = "nfs-root"
		into.BootStageAt = later(into.BootStageAt, x.LastRequest)
	}
	into.LastSeen = later(into.LastSeen, x.LastRequest)
}

func (n nfsComponent) NodeSighting(name string, _ *cluster.Node) (Sighting, bool) {
	x, ok := n.export(name)
	if !ok || x.LastAddr == "" {
		return Sighting{}, false
	}
	a, err := netip.ParseAddr(x.LastAddr)
	if err != nil {
		return Sighting{}, false
	}
	return Sighting{Addr: a.Unmap(), At: x.LastRequest}, true
}
