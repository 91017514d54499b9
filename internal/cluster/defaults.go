package cluster

import (
	"path/filepath"
	"time"
)

// Defaults Load fills in for settings cluster.yaml leaves out.
const (
	DefaultTFTPPort     uint16 = 69
	DefaultNFSPort      uint16 = 2049
	DefaultBalancerPort uint16 = 80
	DefaultAgentPort    uint16 = 4390
	// DefaultAPIPort 0: the API listens on the unix socket only.
	DefaultAPIPort   uint16 = 0
	DefaultStateDir         = "/var/lib/pictl"
	DefaultAPISocket        = "/run/pictl/pictl.sock"
	DefaultDHCPMode         = DHCPFull
	DefaultLease            = Duration(time.Hour)
	DefaultDiscovery        = DiscoveryRecord
	// DefaultPi3Delay: a Pi 3's boot ROM mishandles an instant DHCP reply
	// (the reason for dnsmasq's dhcp-reply-delay).
	DefaultPi3Delay = Duration(2 * time.Second)
)

// ApplyDefaults fills in every setting left out (Load calls it):
//
//	ports: tftp 69, nfs 2049, balancer 80, agent 4390, api 0 (unix socket only)
//	controller.state_dir /var/lib/pictl, controller.api_socket /run/pictl/pictl.sock
//	dhcp.mode full, dhcp.lease 1h, dhcp.pi3_delay 2s
//	discovery record
//	volumes.NAME.path <state_dir>/volumes/NAME
//
// and makes the maps non-nil. Images' boot and root paths stay empty when
// not written: the image store decides where an image lives.
func (c *Cluster) ApplyDefaults() {
	if c.Ports.TFTP == 0 {
		c.Ports.TFTP = DefaultTFTPPort
	}
	if c.Ports.NFS == 0 {
		c.Ports.NFS = DefaultNFSPort
	}
	if c.Ports.Balancer == 0 {
		c.Ports.Balancer = DefaultBalancerPort
	}
	if c.Ports.Agent == 0 {
		c.Ports.Agent = DefaultAgentPort
	}
	if c.Controller.StateDir == "" {
		c.Controller.StateDir = DefaultStateDir
	}
	if c.Controller.APISocket == "" {
		c.Controller.APISocket = DefaultAPISocket
	}
	if c.DHCP.Mode == "" {
		c.DHCP.Mode = DefaultDHCPMode
	}
	if c.DHCP.Lease == 0 {
		c.DHCP.Lease = DefaultLease
	}
	if c.DHCP.Pi3Delay == nil {
		d := DefaultPi3Delay
		c.DHCP.Pi3Delay = &d
	}
	if c.Discovery == "" {
		c.Discovery = DefaultDiscovery
	}
	if c.Images == nil {
		c.Images = map[string]*Image{}
	}
	if c.Nodes == nil {
		c.Nodes = map[string]*Node{}
	}
	if c.Volumes == nil {
		c.Volumes = map[string]*Volume{}
	}
	if c.Roles == nil {
		c.Roles = map[string]*RoleRef{}
	}
	for name, v := range c.Volumes {
		if v == nil {
			v = &Volume{}
			c.Volumes[name] = v
		}
		if v.Path == "" {
			v.Path = filepath.Join(c.Controller.StateDir, "volumes", name)
		}
	}
	for name, img := range c.Images {
		if img == nil {
			c.Images[name] = &Image{}
		}
	}
	for name, n := range c.Nodes {
		if n == nil {
			c.Nodes[name] = &Node{}
		}
	}
	for name, r := range c.Roles {
		if r == nil {
			c.Roles[name] = &RoleRef{}
		}
	}
}

// Pi3ReplyDelay is dhcp.pi3_delay with its default.
func (d DHCP) Pi3ReplyDelay() time.Duration {
	if d.Pi3Delay == nil {
		return DefaultPi3Delay.D()
	}
	return d.Pi3Delay.D()
}
