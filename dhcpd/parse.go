package dhcpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var errShortPacket = errors.New("packet shorter than a BOOTP header")
var errBadCookie = errors.New("no DHCP magic cookie")
var errBadOption = errors.New("option runs past the end of the packet")

// packetInline is the datagram size a packet holds without allocating:
// the 576 bytes every DHCP client must accept (and no Pi or PXE ROM sends
// more), with room for a few concatenated options.
const packetInline = 640

// packet is a parsed DHCP request: the BOOTP fields, and the options as
// offsets into raw, the server's own copy of the datagram. The library's
// DHCPv4 (and FromBytes) keeps options in a map, which costs an
// allocation and a hash per option per packet; a request has a dozen
// options, which a linear scan finds as fast. packet lives inside the
// request, so parsing a packet of up to packetInline bytes allocates
// nothing of its own. Values returned by its methods are slices of raw:
// they live as long as the packet.
type packet struct {
	op    dhcpv4.OpcodeType
	htype iana.HWType
	hops  uint8
	xid   dhcpv4.TransactionID
	secs  uint16
	flags uint16
	// ciaddr, yiaddr, siaddr, giaddr as sent (0.0.0.0 included).
	ciaddr, yiaddr, siaddr, giaddr [4]byte
	chaddr                         net.HardwareAddr // slice of raw
	raw                            []byte
	opts                           []optRef
	inline                         [24]optRef
	buf                            [packetInline]byte
}

// optRef is one option: its value is raw[off : off+n].
type optRef struct {
	code   uint8
	off, n uint32
}

// parseRequest decodes a datagram into p like dhcpv4.FromBytes (same
// fields, same errors for the same inputs, RFC 3396 concatenation of
// repeated options: FuzzParseRequest checks it).
func parseRequest(p *packet, data []byte) error {
	if len(data) < bootpHeaderLen+4 {
		return errShortPacket
	}
	b := append(p.buf[:0], data...)
	if [4]byte(b[236:240]) != magicCookie {
		return errBadCookie
	}
	hlen := int(b[2])
	if hlen > 16 {
		hlen = 16
	}
	p.op, p.htype, p.hops = dhcpv4.OpcodeType(b[0]), iana.HWType(b[1]), b[3]
	p.xid = dhcpv4.TransactionID(b[4:8])
	p.secs = uint16(b[8])<<8 | uint16(b[9])
	p.flags = uint16(b[10])<<8 | uint16(b[11])
	p.ciaddr, p.yiaddr, p.siaddr, p.giaddr = [4]byte(b[12:16]), [4]byte(b[16:20]), [4]byte(b[20:24]), [4]byte(b[24:28])
	p.opts = p.inline[:0]
	var seen, repeated [4]uint64 // bit sets of option codes
	if len(b) > 240 {            // like FromBytes: no options at all is not missing an end
		opts := b[240:]
		for i := 0; ; {
			if i >= len(opts) {
				return io.ErrUnexpectedEOF // no end option
			}
			code := opts[i]
			if code == 0 {
				i++
				continue
			}
			if code == 255 {
				break
			}
			if i+1 >= len(opts) || i+2+int(opts[i+1]) > len(opts) {
				return errBadOption
			}
			n := int(opts[i+1])
			if seen[code/64]&(1<<(code%64)) != 0 {
				repeated[code/64] |= 1 << (code % 64)
			}
			seen[code/64] |= 1 << (code % 64)
			p.opts = append(p.opts, optRef{code: code, off: uint32(240 + i + 2), n: uint32(n)})
			i += 2 + n
		}
	}
	if repeated != [4]uint64{} {
		b = p.concatRepeated(b, &repeated)
	}
	p.raw = b
	p.chaddr = net.HardwareAddr(b[28 : 28+hlen : 28+hlen])
	return nil
}

// concatRepeated joins the parts of every repeated option (RFC 3396), in
// order, into one value appended to b, and keeps one entry per code. It
// is for odd packets only: it may allocate, the common path does not.
func (p *packet) concatRepeated(b []byte, repeated *[4]uint64) []byte {
	kept := p.opts[:0]
	all := p.opts
	var done [4]uint64
	for j, o := range all {
		c := o.code
		if repeated[c/64]&(1<<(c%64)) == 0 {
			kept = append(kept, o)
			continue
		}
		if done[c/64]&(1<<(c%64)) != 0 {
			continue
		}
		done[c/64] |= 1 << (c % 64)
		off := uint32(len(b))
		for _, part := range all[j:] {
			if part.code == c {
				b = append(b, b[part.off:part.off+part.n]...)
			}
		}
		kept = append(kept, optRef{code: c, off: off, n: uint32(len(b)) - off})
	}
	p.opts = kept
	return b
}

// option returns option code's value, nil when absent (an empty option
// is present: a non-nil empty slice).
func (p *packet) option(code uint8) []byte {
	for _, o := range p.opts {
		if o.code == code {
			return p.raw[o.off : o.off+o.n : o.off+o.n]
		}
	}
	return nil
}

// messageType is option 53, as dhcpv4.DHCPv4.MessageType reads it.
func (p *packet) messageType() dhcpv4.MessageType {
	if v := p.option(dhcpv4.OptionDHCPMessageType.Code()); len(v) == 1 {
		return dhcpv4.MessageType(v[0])
	}
	return dhcpv4.MessageTypeNone
}

// ipOption reads a one-address option (50, 54); invalid when absent,
// malformed or 0.0.0.0 (like addrOf of the library's getters).
func (p *packet) ipOption(code uint8) netip.Addr {
	if v := p.option(code); len(v) == 4 {
		return addr4([4]byte(v))
	}
	return netip.Addr{}
}

func (p *packet) requested() netip.Addr {
	return p.ipOption(dhcpv4.OptionRequestedIPAddress.Code())
}

func (p *packet) serverID() netip.Addr {
	return p.ipOption(dhcpv4.OptionServerIdentifier.Code())
}

// clientIP and gateway are ciaddr and giaddr, invalid when 0.0.0.0.
func (p *packet) clientIP() netip.Addr { return addr4(p.ciaddr) }
func (p *packet) gateway() netip.Addr  { return addr4(p.giaddr) }

// hostName is option 12 without trailing NULs, as DHCPv4.HostName.
func (p *packet) hostName() string {
	return strings.TrimRight(string(p.option(dhcpv4.OptionHostName.Code())), "\x00")
}

// optionRequested is DHCPv4.IsOptionRequested: listed in option 55, or
// option 55 absent (RFC 2131 §3.5: then everything is).
func (p *packet) optionRequested(code uint8) bool {
	prl := p.option(dhcpv4.OptionParameterRequestList.Code())
	return prl == nil || bytes.IndexByte(prl, code) >= 0
}

func addr4(b [4]byte) netip.Addr {
	if b == [4]byte{} {
		return netip.Addr{}
	}
	return netip.AddrFrom4(b)
}
