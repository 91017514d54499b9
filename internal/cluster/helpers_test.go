package cluster

import (
	"net/netip"
	"strconv"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func itoa(i int) string { return strconv.Itoa(i) }
