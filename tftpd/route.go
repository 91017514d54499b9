package tftpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Request is a read request after name cleaning.
type Request struct {
	Name   string     // cleaned, see CleanName
	Client netip.Addr // source address
	Local  netip.Addr // address the request arrived on; invalid if unknown
}

// Target is what a route resolved a request to: a node and a path inside
// that node's boot tree.
type Target struct {
	Node Node
	Path string
	Via  NodeKey // how the node was found, for logs
}

// Route maps the requests it recognises to a node. Routes are tried in
// order; the first that returns ok=true decides, with a target or an error
// (an [*UnknownClientError] when it recognised the request but no node
// matched).
type Route interface {
	Resolve(ctx context.Context, req Request) (t Target, ok bool, err error)
}

// UnknownClientError means the request was understood but no node matches
// the client. The client gets "file not found" and is reported to the
// Recorder.
type UnknownClientError struct {
	Key NodeKey
	MAC net.HardwareAddr // from the neighbour table, when the key is an IP
}

func (e *UnknownClientError) Error() string { return "no node for " + e.Key.String() }

// DefaultRoutes is the order pictl uses: serial prefix, MAC prefix, then the
// client's address for everything else.
func DefaultRoutes(nodes Nodes, neigh Neighbors) []Route {
	return []Route{SerialPrefixRoute(nodes), MACPrefixRoute(nodes), ClientAddressRoute(nodes, neigh)}
}

// SerialPrefixRoute claims "<serial>/<file>" where serial is 8 lowercase hex
// digits, the Raspberry Pi bootloader's default prefix.
func SerialPrefixRoute(nodes Nodes) Route { return serialRoute{nodes} }

type serialRoute struct{ nodes Nodes }

func (r serialRoute) Resolve(ctx context.Context, req Request) (Target, bool, error) {
	prefix, rest, ok := splitPrefix(req.Name)
	if !ok || !isSerialPrefix(prefix) {
		return Target{}, false, nil
	}
	t, err := lookup(ctx, r.nodes, NodeKey{Serial: prefix}, rest)
	return t, true, err
}

// MACPrefixRoute claims "<mac>/<file>" with a dashed MAC
// ("dc-a6-32-01-36-c2/start4.elf", EEPROM TFTP_PREFIX=2).
func MACPrefixRoute(nodes Nodes) Route { return macRoute{nodes} }

type macRoute struct{ nodes Nodes }

func (r macRoute) Resolve(ctx context.Context, req Request) (Target, bool, error) {
	prefix, rest, ok := splitPrefix(req.Name)
	if !ok {
		return Target{}, false, nil
	}
	mac, ok := parseMACPrefix(prefix)
	if !ok {
		return Target{}, false, nil
	}
	t, err := lookup(ctx, r.nodes, NodeKey{MAC: mac}, rest)
	return t, true, err
}

// ClientAddressRoute claims every request and finds the node by the
// client's address: first as Nodes knows it (lease or reservation), then
// through the MAC the neighbour table holds for that address (a proxyDHCP
// setup where another server hands out addresses). neigh may be nil.
func ClientAddressRoute(nodes Nodes, neigh Neighbors) Route { return addrRoute{nodes, neigh} }

type addrRoute struct {
	nodes Nodes
	neigh Neighbors
}

func (r addrRoute) Resolve(ctx context.Context, req Request) (Target, bool, error) {
	t, err := lookup(ctx, r.nodes, NodeKey{IP: req.Client}, req.Name)
	var unknown *UnknownClientError
	if err == nil || !errors.As(err, &unknown) || r.neigh == nil {
		return t, true, err
	}
	mac, ok := r.neigh.MACOf(req.Client)
	if !ok {
		return t, true, err
	}
	t, err = lookup(ctx, r.nodes, NodeKey{MAC: mac}, req.Name)
	if errors.As(err, &unknown) {
		// Report the address, the key the client actually presented.
		return t, true, &UnknownClientError{Key: NodeKey{IP: req.Client}, MAC: mac}
	}
	return t, true, err
}

func lookup(ctx context.Context, nodes Nodes, key NodeKey, path string) (Target, error) {
	n, found, err := nodes.LookupNode(ctx, key)
	if err != nil {
		return Target{}, fmt.Errorf("look up node by %s: %w", key, err)
	}
	if !found {
		return Target{}, &UnknownClientError{Key: key}
	}
	if path == "" {
		return Target{}, &NameError{"names a directory"}
	}
	return Target{Node: n, Path: path, Via: key}, nil
}
