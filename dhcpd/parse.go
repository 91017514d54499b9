package dhcpd

import (
	"errors"
	"io"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var errShortPacket = errors.New("packet shorter than a BOOTP header")
var errBadCookie = errors.New("no DHCP magic cookie")
var errBadOption = errors.New("option runs past the end of the packet")

// parseRequest decodes a datagram like dhcpv4.FromBytes (same fields, same
// errors for the same inputs: FuzzParseRequest checks it), but from one
// copy of the packet: the addresses, hardware address and option values
// are slices of it. FromBytes makes about fifteen allocations per packet,
// which at thousands of packets a second is a tenth of the server's CPU.
func parseRequest(data []byte) (*dhcpv4.DHCPv4, error) {
	if len(data) < bootpHeaderLen+4 {
		return nil, errShortPacket
	}
	b := append([]byte(nil), data...)
	if [4]byte(b[236:240]) != magicCookie {
		return nil, errBadCookie
	}
	hlen := int(b[2])
	if hlen > 16 {
		hlen = 16
	}
	p := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeType(b[0]),
		HWType:        iana.HWType(b[1]),
		HopCount:      b[3],
		TransactionID: dhcpv4.TransactionID(b[4:8]),
		NumSeconds:    uint16(b[8])<<8 | uint16(b[9]),
		Flags:         uint16(b[10])<<8 | uint16(b[11]),
		ClientIPAddr:  net.IP(b[12:16:16]),
		YourIPAddr:    net.IP(b[16:20:20]),
		ServerIPAddr:  net.IP(b[20:24:24]),
		GatewayIPAddr: net.IP(b[24:28:28]),
		ClientHWAddr:  net.HardwareAddr(b[28 : 28+hlen : 28+hlen]),
	}
	p.ServerHostName = cString(b[44:108])
	p.BootFileName = cString(b[108:236])
	opts := b[240:]
	n := 0
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			i++
			continue
		case 255:
			i = len(opts)
			continue
		}
		n++
		if i+1 >= len(opts) {
			break
		}
		i += 2 + int(opts[i+1])
	}
	p.Options = make(dhcpv4.Options, n)
	if len(opts) == 0 {
		return p, nil // like FromBytes: no options at all is not missing an end
	}
	for i := 0; ; {
		if i >= len(opts) {
			return nil, io.ErrUnexpectedEOF // no end option
		}
		code := opts[i]
		if code == 0 {
			i++
			continue
		}
		if code == 255 {
			return p, nil
		}
		if i+1 >= len(opts) || i+2+int(opts[i+1]) > len(opts) {
			return nil, errBadOption
		}
		v := opts[i+2 : i+2+int(opts[i+1]) : i+2+int(opts[i+1])]
		i += 2 + len(v)
		// RFC 3396: repeated options are concatenated (append copies:
		// v's capacity ends at its length).
		p.Options[code] = append(p.Options[code], v...)
		if len(p.Options[code]) == len(v) {
			p.Options[code] = v
		}
	}
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
