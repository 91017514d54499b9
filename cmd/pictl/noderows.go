package main

import (
	"slices"

	"github.com/pictl/pictl/internal/api"
)

// mergeRuntime gives each row of cluster.yaml the runtime facts the
// controller reports for the same node. The controller may lag behind the
// file (it reloads within about a second): a node it does not know yet
// gets empty facts, a node it still knows but the file no longer has is
// not listed, and facts of a node whose MACs changed since are dropped
// (they describe the old machine).
func mergeRuntime(rows, live []api.Node) []api.Node {
	byName := make(map[string]api.Node, len(live))
	for _, n := range live {
		byName[n.Name] = n
	}
	for i := range rows {
		rows[i].Runtime = &api.NodeRuntime{}
		if n, ok := byName[rows[i].Name]; ok && n.Runtime != nil && slices.Equal(n.MACs, rows[i].MACs) {
			rt := *n.Runtime
			rows[i].Runtime = &rt
		}
	}
	return rows
}
