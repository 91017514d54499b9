package dhcpd

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

const (
	bootpHeaderLen = 236
	bootpMinLen    = 300 // RFC 951: relays and some clients drop shorter packets
	wireCap        = 576 // the size every DHCP client must accept
)

var magicCookie = [4]byte{99, 130, 83, 99}

// replyMsg is a reply under construction: the BOOTP fields and a short
// option list, kept inline (a reply has about a dozen options), so
// building and encoding one costs two small allocations instead of a map.
type replyMsg struct {
	typ                            dhcpv4.MessageType
	hwType, hops                   uint8
	xid                            dhcpv4.TransactionID
	flags                          uint16
	ciaddr, yiaddr, siaddr, giaddr netip.Addr
	chaddr                         net.HardwareAddr
	file                           string
	opts                           []replyOpt
	inline                         [16]replyOpt
}

type replyOpt struct {
	code uint8
	val  []byte
}

func (m *replyMsg) init() { m.opts = m.inline[:0] }

// set adds option code or replaces its value.
func (m *replyMsg) set(code uint8, v []byte) {
	for i := range m.opts {
		if m.opts[i].code == code {
			m.opts[i].val = v
			return
		}
	}
	m.opts = append(m.opts, replyOpt{code, v})
}

func (m *replyMsg) get(code uint8) []byte {
	for _, o := range m.opts {
		if o.code == code {
			return o.val
		}
	}
	return nil
}

// encode writes the reply: option 53 first, as dnsmasq sends it (boot
// ROMs have been seen to look for it there), then the others in ascending
// order, 82 (relay agent information) last (RFC 3046), long options split
// (RFC 3396), the end option, padding to 300 bytes.
func (m *replyMsg) encode() []byte {
	size := bootpHeaderLen + 4 + 3 + 1
	for _, o := range m.opts {
		size += 2*(len(o.val)/255+1) + len(o.val)
	}
	b := make([]byte, bootpHeaderLen, max(size, wireCap))
	b[0], b[1], b[2], b[3] = byte(dhcpv4.OpcodeBootReply), m.hwType, byte(len(m.chaddr)), m.hops
	copy(b[4:8], m.xid[:])
	binary.BigEndian.PutUint16(b[10:], m.flags)
	putAddr(b[12:16], m.ciaddr)
	putAddr(b[16:20], m.yiaddr)
	putAddr(b[20:24], m.siaddr)
	putAddr(b[24:28], m.giaddr)
	copy(b[28:44], m.chaddr)
	copy(b[108:108+127], m.file)
	b = append(b, magicCookie[:]...)
	b = append(b, 53, 1, byte(m.typ))
	put := func(o replyOpt) {
		v := o.val
		if len(v) == 0 {
			b = append(b, o.code, 0)
			return
		}
		for len(v) > 0 {
			n := min(len(v), 255)
			b = append(b, o.code, byte(n))
			b = append(b, v[:n]...)
			v = v[n:]
		}
	}
	// Insertion sort: a dozen options, already nearly in order.
	opts := m.opts
	for i := 1; i < len(opts); i++ {
		for j := i; j > 0 && optRank(opts[j].code) < optRank(opts[j-1].code); j-- {
			opts[j], opts[j-1] = opts[j-1], opts[j]
		}
	}
	for _, o := range opts {
		if o.code != 53 && o.code != 0 && o.code != 255 {
			put(o)
		}
	}
	b = append(b, 255)
	for len(b) < bootpMinLen {
		b = append(b, 0)
	}
	return b
}

func putAddr(dst []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(dst, v[:])
	}
}

// optRank orders options for encode: by code, 82 after all others.
func optRank(code uint8) int {
	if code == 82 {
		return 256
	}
	return int(code)
}
