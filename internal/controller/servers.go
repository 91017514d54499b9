package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pictl/pictl/dhcpd"
	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/neigh"
	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/tftpd"
)

// listenServer is a component whose sockets can be opened before it
// serves: the controller opens every socket first, so a port clash stops
// `pictl serve` before it reports ready.
type listenServer interface {
	Listen() error
	Serve(ctx context.Context) error
}

// namedServer gives a server without a Name/Run pair the Component shape.
type namedServer struct {
	name string
	listenServer
}

func (n namedServer) Name() string                  { return n.name }
func (n namedServer) Run(ctx context.Context) error { return n.Serve(ctx) }

// AddServers builds the boot servers cluster.yaml asks for — DHCP (full or
// proxy) with the IPv6 router advertisement iPXE waits for, TFTP and NFS —
// and registers them. Their sockets bind to the controller's address (TFTP,
// NFS) and boot interfaces (DHCP), never to every interface.
func (c *Controller) AddServers() error {
	cl := c.Cluster()
	addr := cl.Controller.Address.Addr()
	imgs := imageStore(cl.Controller.StateDir, c.log)
	dir := &nodeDirectory{cluster: c.Cluster, images: imgs, neigh: neigh.Lookup}
	c.dir = dir

	if cl.DHCP.Mode != cluster.DHCPOff {
		srv, err := dhcpd.New(dhcpConfig(cl), dir, c.db, c.log.With("component", "dhcpd"), c.metrics)
		if err != nil {
			return fmt.Errorf("dhcp server: %w", err)
		}
		if cl.DHCP.Mode == cluster.DHCPFull {
			dir.leases = srv.Leases
		}
		c.dhcp = srv
		c.Register(srv)
		ra, err := dhcpd.NewRAResponder(cl.Controller.Interfaces, c.log.With("component", "ra"))
		if err != nil {
			return fmt.Errorf("router advertisements: %w", err)
		}
		c.Register(ra)
	}

	stages, err := tftpd.NewStageStore(c.db, c.log.With("component", "tftpd"))
	if err != nil {
		return err
	}
	c.stages = stages
	tsrv, err := tftpd.New(tftpd.Config{
		Addr:          net.JoinHostPort(addr.String(), strconv.Itoa(int(cl.Ports.TFTP))),
		NFSServer:     addr,
		NFSPort:       cl.Ports.NFS,
		Window:        cl.TFTP.Window,
		WindowClients: cl.TFTP.WindowClients,
	}, dir, stages, c.log.With("component", "tftpd"), c.metrics)
	if err != nil {
		return fmt.Errorf("tftp server: %w", err)
	}
	c.Register(tsrv)

	nsrv, err := nfsd.New(nfsd.Config{
		Addr:     net.JoinHostPort(addr.String(), strconv.Itoa(int(cl.Ports.NFS))),
		StateDir: cl.Controller.StateDir,
	}, dir, dir, c.db, c.log.With("component", "nfsd"), c.metrics)
	if err != nil {
		return fmt.Errorf("nfs server: %w", err)
	}
	c.nfs, c.layers = nsrv, nsrv
	c.Register(namedServer{name: "nfsd", listenServer: nsrv})
	return nil
}

// dhcpConfig translates cluster.yaml's dhcp section.
func dhcpConfig(cl *cluster.Cluster) dhcpd.Config {
	d := cl.DHCP
	cfg := dhcpd.Config{
		Mode:       dhcpd.ModeFull,
		Interfaces: cl.Controller.Interfaces,
		ServerIP:   cl.Controller.Address.Addr(),
		LeaseTime:  d.Lease.D(),
		Discovery:  dhcpd.DiscoveryPolicy(cl.Discovery),
		ReplyDelay: map[dhcpd.Class]time.Duration{
			dhcpd.ClassPi3B:     d.Pi3ReplyDelay(),
			dhcpd.ClassPi3BPlus: d.Pi3ReplyDelay(),
		},
	}
	if d.Mode == cluster.DHCPProxy {
		cfg.Mode = dhcpd.ModeProxy
		return cfg
	}
	cfg.Subnets = []dhcpd.Subnet{{
		Network:  cl.Subnet(),
		ServerIP: cl.Controller.Address.Addr(),
		Range:    dhcpd.Range{First: d.Range.First, Last: d.Range.Last},
		Router:   d.Router,
		DNS:      d.DNS,
		Domain:   d.Domain,
	}}
	return cfg
}

// reloadServers applies a new cluster.yaml to the servers that keep
// settings (the node lookups read the new state by themselves).
func (c *Controller) reloadServers(cl *cluster.Cluster) {
	c.warnAPIPort(cl)
	if c.dir != nil {
		c.dir.reload()
	}
	if c.dhcp != nil {
		if err := c.dhcp.Reconfigure(dhcpConfig(cl)); errors.Is(err, dhcpd.ErrRestartRequired) {
			c.log.Warn("dhcp settings changed that need a restart of pictl serve (interfaces, mode or ports)")
		} else if err != nil {
			c.log.Error("dhcp settings rejected; keeping the old ones", "err", err)
		}
	}
}

// serverFacts fills a node's runtime row from the lease table, the boot
// stages and the NFS exports.
func (c *Controller) serverFacts(name string, n *cluster.Node, into *api.NodeRuntime) {
	if c.dhcp != nil {
		for _, mac := range n.MACs {
			if l, ok, _ := c.dhcp.Store().LeaseByMAC(mac); ok {
				into.LeaseIP = l.IP.String()
				into.Address = into.LeaseIP
				into.LeaseExpires = l.Expires
				into.LastSeen = later(into.LastSeen, l.Granted)
				break
			}
		}
	}
	if c.stages != nil {
		if ev, ok, _ := c.stages.LastStage(name); ok {
			into.BootStage = string(ev.Stage)
			into.BootStageAt = ev.At
			if into.Address == "" {
				into.Address = ev.Client
			}
			into.LastSeen = later(into.LastSeen, ev.At)
		}
	}
	if c.nfs != nil {
		for _, x := range c.nfs.Exports() {
			if x.Name == name && x.Path == "/nodes/"+name {
				// Without a lease of ours, the freshest source address wins.
				if x.LastAddr != "" && into.LeaseIP == "" && (into.Address == "" || x.LastRequest.After(into.BootStageAt)) {
					into.Address = x.LastAddr
				}
				if !x.LastRequest.IsZero() && x.Mounts > 0 {
					into.BootStage = "nfs-root"
					into.BootStageAt = later(into.BootStageAt, x.LastRequest)
				}
				into.LastSeen = later(into.LastSeen, x.LastRequest)
			}
		}
	}
}

// discovered lists the clients that asked to boot but are not nodes.
func (c *Controller) discovered() ([]api.Discovered, error) {
	if c.dhcp == nil {
		return nil, nil
	}
	list, err := c.dhcp.Store().Discovered()
	if err != nil {
		return nil, err
	}
	cl := c.Cluster()
	out := make([]api.Discovered, 0, len(list))
	for _, d := range list {
		if _, _, known := cl.NodeByMAC(d.MAC); known {
			continue // adopted since it was recorded
		}
		out = append(out, api.Discovered{
			MAC: d.MAC.String(), Serial: d.Serial, Model: d.Class.String(),
			Interface: d.Interface, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen,
		})
	}
	return out, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
