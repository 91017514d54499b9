package controller

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/pictl/pictl/dhcpd"
	"github.com/pictl/pictl/internal/agent"
	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/neigh"
	"github.com/pictl/pictl/internal/store"
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
		c.Register(dhcpComponent{Server: srv, log: c.log})
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
	c.Register(tftpComponent{Server: tsrv, stages: stages})

	nsrv, err := nfsd.New(nfsd.Config{
		Addr:     net.JoinHostPort(addr.String(), strconv.Itoa(int(cl.Ports.NFS))),
		StateDir: cl.Controller.StateDir,
	}, dir, dir, c.db, c.log.With("component", "nfsd"), c.metrics)
	if err != nil {
		return fmt.Errorf("nfs server: %w", err)
	}
	c.Register(nfsComponent{Server: nsrv})
	if err := c.addRoles(cl, dir); err != nil {
		return err
	}
	c.Register(newBalancerComponent(c))
	return nil
}

// addRoles registers the role layers and the agents' listener, when the
// controller has a role catalog, and renders every node's layer before
// anything serves: a node that boots at once gets its role.
func (c *Controller) addRoles(cl *cluster.Cluster, dir *nodeDirectory) error {
	if c.roleCatalog == nil {
		return nil
	}
	state := cl.Controller.StateDir
	secret, created, err := api.LoadOrCreateToken(filepath.Join(state, "agent-secret"))
	if err != nil {
		return fmt.Errorf("agent secret: %w", err)
	}
	if created {
		c.log.Info("created the agents' secret; every node's credential derives from it", "file", filepath.Join(state, "agent-secret"))
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("agent binary: %w", err)
	}
	log := c.log.With("component", "roles")
	rl := newRoleLayers(state, log)
	rl.userDir = userRolesDir(c.cfg.Store)
	rl.cluster = c.Cluster
	rl.renderer = func() (roleRenderer, error) { return c.roleCatalog(rl.userDir) }
	rl.meta = dir.meta
	rl.addr = c.NodeAddress
	rl.drainers = func() []Drainer { return componentsAs[Drainer](c) }
	rl.agentURL = agentURL
	rl.secret = []byte(secret)
	rl.binaries = agentBinaries{self: self, selfArch: debianArch(runtime.GOARCH)}
	if err := rl.Reload(context.Background(), cl); err != nil {
		log.Error("rendering role layers failed", "err", err)
	}
	dir.roleLayer = rl.RoleLayer
	c.Register(rl)
	c.Register(&agent.Listener{
		Addr:        net.JoinHostPort(cl.Controller.Address.Addr().String(), strconv.Itoa(int(cl.Ports.Agent))),
		Secret:      []byte(secret),
		Coordinator: rl,
		Log:         c.log.With("component", "agent-listener"),
	})
	return nil
}

// userRolesDir holds the user's role definitions: roles/ beside
// cluster.yaml.
func userRolesDir(st *store.Store) string {
	return filepath.Join(filepath.Dir(st.Path()), "roles")
}

// agentURL is where the nodes' agents reach the controller.
func agentURL(cl *cluster.Cluster) string {
	return "http://" + net.JoinHostPort(cl.Controller.Address.Addr().String(), strconv.Itoa(int(cl.Ports.Agent)))
}

// debianArch names a Go architecture as Debian (and cluster.yaml) do.
func debianArch(goarch string) string {
	switch goarch {
	case "arm":
		return "armhf"
	case "386":
		return "i386"
	}
	return goarch
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

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
