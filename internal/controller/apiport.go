package controller

import (
	"net"
	"strconv"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

// listenTCP opens the API's TCP port when cluster.yaml sets ports.api,
// with the token from the state directory (made on first use). It listens
// on every address: the agent on the nodes comes from the boot network, a
// person's browser usually from another one, and the token, not the
// interface, is what guards it.
func (c *Controller) listenTCP(srv *api.Server) error {
	cl := c.Cluster()
	if cl.Ports.API == 0 {
		return nil
	}
	path := api.TokenFile(cl.Controller.StateDir)
	token, created, err := api.LoadOrCreateToken(path)
	if err != nil {
		return err
	}
	if created {
		c.log.Info("created the API token; print it with `pictl api token`", "file", path)
	}
	if err := srv.ListenTCP(net.JoinHostPort("", strconv.Itoa(int(cl.Ports.API))), token); err != nil {
		return err
	}
	return nil
}

// StatusURL is the status page's address, "" when the API has no TCP port.
func (c *Controller) StatusURL() string {
	if c.api == nil || c.api.TCPAddr() == nil {
		return ""
	}
	return api.PageURL(c.Cluster())
}

// apiDetail says where the API listens, for its row in the status.
func (c *Controller) apiDetail() string {
	if c.api == nil {
		return ""
	}
	d := "unix " + c.api.SocketPath
	if a := c.api.TCPAddr(); a != nil {
		d += ", tcp " + a.String() + " (token)"
	}
	return d
}

// warnAPIPort says when a reload changed ports.api: the listener is opened
// once, at start.
func (c *Controller) warnAPIPort(cl *cluster.Cluster) {
	if c.api == nil {
		return
	}
	have := uint16(0)
	if ta, ok := c.api.TCPAddr().(*net.TCPAddr); ok {
		have = uint16(ta.Port)
	}
	if cl.Ports.API != have {
		c.log.Warn("ports.api changed; restart pictl serve to apply it", "listening", have, "wanted", cl.Ports.API)
	}
}
