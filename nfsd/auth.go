package nfsd

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
)

// Who is asking, and may they use this export at all. go-nfs hands the
// handler neither the RPC credentials nor the client's address (except at
// MOUNT), so both are taken from the record below go-nfs, for every call,
// before anything else looks at it (calls.go).

// RPC authentication flavors (RFC 5531).
const (
	authNone = 0
	authUnix = 1
)

// cred is the identity a call acts as, after squashing.
type cred struct {
	uid, gid uint32
	gids     []uint32 // supplementary groups (at most 16 in AUTH_UNIX)
}

func (c cred) root() bool { return c.uid == 0 }

// inGroup reports whether the caller is a member of group g.
func (c cred) inGroup(g uint32) bool { return c.gid == g || slices.Contains(c.gids, g) }

// rpcCred is a decoded call credential.
type rpcCred struct {
	flavor uint32
	cred   cred // AUTH_UNIX only
}

// parseAuthUnix decodes an authsys_parms body: stamp, machine name,
// uid, gid, gids<16>.
func parseAuthUnix(b []byte) (cred, bool) {
	var c cred
	if len(b) < 8 {
		return c, false
	}
	n := binary.BigEndian.Uint32(b[4:])
	if n > 255 {
		return c, false
	}
	off := 8 + int(n+3)&^3
	if len(b) < off+12 {
		return c, false
	}
	c.uid = binary.BigEndian.Uint32(b[off:])
	c.gid = binary.BigEndian.Uint32(b[off+4:])
	ng := binary.BigEndian.Uint32(b[off+8:])
	off += 12
	if ng > 16 || len(b) != off+4*int(ng) {
		return c, false
	}
	if ng > 0 {
		c.gids = make([]uint32, ng)
		for i := range c.gids {
			c.gids[i] = binary.BigEndian.Uint32(b[off+4*i:])
		}
	}
	return c, true
}

// Squash modes of a volume (Volume.Squash).
const (
	SquashRoot = "root" // default: uid 0 acts as the anonymous user (knfsd root_squash)
	SquashNone = "none" // no_root_squash
	SquashAll  = "all"  // all_squash: every user acts as the anonymous user
)

// DefaultAnonID is the anonymous uid and gid (nobody, nogroup) unless
// configured otherwise.
const DefaultAnonID = 65534

// effective maps a call's credential to the identity it acts as on x. A
// node's root is its own file system: its root is root. Volumes squash as
// knfsd's export options say. AUTH_NONE acts as the anonymous user of the
// export (or is refused, Config.RefuseAuthNone). ok is false for a
// credential the call must be refused for.
func (s *Server) effective(x *export, rc rpcCred) (cred, bool) {
	anon := cred{uid: s.cfg.anonUID(), gid: s.cfg.anonGID()}
	squash := SquashNone
	if x.kind == exportVolume {
		v := x.vol.Load()
		if v != nil {
			squash = v.Squash
			if v.AnonUID != nil {
				anon.uid = *v.AnonUID
			}
			if v.AnonGID != nil {
				anon.gid = *v.AnonGID
			}
		}
		if squash == "" {
			squash = SquashRoot
		}
	}
	switch rc.flavor {
	case authUnix:
	case authNone:
		if s.cfg.RefuseAuthNone {
			return cred{}, false
		}
		return anon, true
	default:
		return cred{}, false
	}
	c := rc.cred
	switch squash {
	case SquashAll:
		return anon, true
	case SquashRoot:
		if c.uid == 0 {
			c.uid = anon.uid
		}
		if c.gid == 0 {
			c.gid = anon.gid
		}
		if slices.Contains(c.gids, 0) {
			gids := make([]uint32, 0, len(c.gids))
			for _, g := range c.gids {
				if g != 0 {
					gids = append(gids, g)
				}
			}
			c.gids = gids
		}
	}
	return c, true
}

// mayUse reports whether a client at addr may use export x: the node's
// own root from the node's address, a volume from a node that lists it —
// the rule MOUNT applies, checked again on every call as knfsd checks
// export options per request, so a handle is no bearer token.
func (s *Server) mayUse(addr netip.Addr, x *export) bool {
	n, ok := s.nodes.ByAddr(addr)
	if !ok {
		return false
	}
	if x.kind == exportNode {
		return n.Name == x.label
	}
	return slices.Contains(n.Volumes, x.label)
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
