package controller

import (
	"context"
	"slices"
	"strings"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

// FactSource is implemented by components that observe nodes (leases,
// boot stages, last seen) and fill in their part of a node's runtime row.
type FactSource interface {
	NodeFacts(ctx context.Context, name string, n *cluster.Node, into *api.NodeRuntime)
}

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
	c.mu.Lock()
	comps := slices.Clone(c.components)
	c.mu.Unlock()

	out := make([]api.Node, 0, len(cl.Nodes))
	for name, n := range cl.Nodes {
		v := api.NodeFromCluster(name, n)
		v.Runtime = &api.NodeRuntime{}
		c.serverFacts(name, n, v.Runtime)
		for _, comp := range comps {
			if fs, ok := comp.(FactSource); ok {
				fs.NodeFacts(ctx, name, n, v.Runtime)
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b api.Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Discovered answers GET /v1/discovered.
func (c *Controller) Discovered(context.Context) ([]api.Discovered, error) {
	return c.discovered()
}
