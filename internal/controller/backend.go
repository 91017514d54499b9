package controller

import (
	"context"
	"slices"
	"strings"

	"github.com/pictl/pictl/internal/api"
)

// Status answers GET /v1/status.
func (c *Controller) Status(context.Context) api.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := api.Status{
		Version:    c.cfg.Version,
		Started:    c.started,
		Config:     c.cfg.Store.Path(),
		Generation: c.generation,
		LoadedAt:   c.loadedAt,
		Nodes:      len(c.Cluster().Nodes),
	}
	if c.reloadErr != nil {
		st.ReloadError = c.reloadErr.Error()
	}
	for _, comp := range c.components {
		st.Components = append(st.Components, c.states[comp.Name()])
	}
	if as, ok := c.states["api"]; ok {
		as.Detail = c.apiDetail()
		st.Components = append(st.Components, as)
	}
	return st
}

// Nodes answers GET /v1/nodes: desired state merged with runtime facts.
func (c *Controller) Nodes(ctx context.Context) ([]api.Node, error) {
	cl := c.Cluster()
	sources := componentsAs[FactSource](c)
	out := make([]api.Node, 0, len(cl.Nodes))
	for name, n := range cl.Nodes {
		v := api.NodeFromCluster(name, n)
		v.Runtime = &api.NodeRuntime{}
		for _, fs := range sources {
			fs.NodeFacts(ctx, name, n, v.Runtime)
		}
		if s, ok := c.SeenAddress(name, n); ok {
			v.Runtime.Address = s.Addr.String()
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b api.Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Discovered answers GET /v1/discovered.
func (c *Controller) Discovered(context.Context) ([]api.Discovered, error) {
	src, ok := firstComponent[DiscoverySource](c)
	if !ok {
		return nil, nil
	}
	return src.Discovered(c.Cluster())
}
