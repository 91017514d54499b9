package dhcpd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Class is what kind of DHCP client sent a packet.
type Class uint8

const (
	// ClassOS is anything that is not a boot firmware: an operating system,
	// an initramfs's udhcpc, a laptop. It gets an address (full mode) and,
	// for a known node, the NFS root path in option 17.
	ClassOS Class = iota
	// ClassPi3B is the BCM2837 boot ROM of a Pi 3B (and 2B v1.2): option 97
	// is 00 + 16×0x44, it never sends DHCPREQUEST.
	ClassPi3B
	// ClassPi3BPlus is the Pi 3B+ boot ROM: option 97 is 00 + serial ×4.
	ClassPi3BPlus
	// ClassPi4 is the Pi 4 / 400 / CM4 EEPROM bootloader.
	ClassPi4
	// ClassPi5 is the Pi 5 / CM5 EEPROM bootloader.
	ClassPi5
	// ClassPi is a Raspberry Pi bootloader whose model could not be told.
	ClassPi
	// ClassIPXE is iPXE (option 175 or option 77 "iPXE").
	ClassIPXE
	// ClassPXE is any other PXE ROM (option 60 "PXEClient..."); Client.Arch
	// says which architecture it boots.
	ClassPXE

	numClasses
)

var classNames = [numClasses]string{
	ClassOS:       "os",
	ClassPi3B:     "pi3b",
	ClassPi3BPlus: "pi3b+",
	ClassPi4:      "pi4",
	ClassPi5:      "pi5",
	ClassPi:       "pi",
	ClassIPXE:     "ipxe",
	ClassPXE:      "pxe",
}

func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// ParseClass is the inverse of Class.String.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return ClassOS, fmt.Errorf("unknown client class %q", s)
}

// MarshalText makes a Class read as its name in JSON.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses a Class name.
func (c *Class) UnmarshalText(b []byte) error {
	v, err := ParseClass(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// IsPi reports whether the class is a Raspberry Pi boot ROM or bootloader.
func (c Class) IsPi() bool {
	switch c {
	case ClassPi3B, ClassPi3BPlus, ClassPi4, ClassPi5, ClassPi:
		return true
	}
	return false
}

// Boots reports whether the client is a boot firmware asking for something
// to boot (as opposed to an OS that only wants an address).
func (c Class) Boots() bool { return c != ClassOS && c < numClasses }

// neverRequests reports whether the firmware takes an OFFER's address
// without sending a DHCPREQUEST, so the offer itself must be a lease.
func (c Class) neverRequests() bool { return c == ClassPi3B || c == ClassPi3BPlus }

// Client is what Classify learns from one packet.
type Client struct {
	Class Class
	// Serial is the Pi's serial number as 8 lowercase hex digits (the form
	// of its TFTP prefix), "" when the packet does not carry it (Pi 3B).
	Serial string
	// BoardRevision is the Pi 4/5 revision code from option 97 (0xa03111
	// is a Pi 4B 1 GB rev 1.1), 0 when absent.
	BoardRevision uint32
	// Arch is option 93's first value (0 = x86 BIOS, also what every Pi
	// sends; 7/9 = x64 UEFI, 11 = arm64 UEFI); HasArch says it was present.
	Arch    uint16
	HasArch bool
	// VendorClass is option 60 as sent.
	VendorClass string
}

// PiOUIs are the MAC prefixes of Raspberry Pi boards (b8:27:eb up to the
// Pi 3, the rest Pi 4 and later; LTSP also lists 28:cd:c1 and 88:a2:9e).
var PiOUIs = [][3]byte{
	{0xb8, 0x27, 0xeb},
	{0xdc, 0xa6, 0x32},
	{0xe4, 0x5f, 0x01},
	{0xd8, 0x3a, 0xdd},
	{0x2c, 0xcf, 0x67},
	{0x28, 0xcd, 0xc1},
	{0x88, 0xa2, 0x9e},
}

var oldPiOUI = [3]byte{0xb8, 0x27, 0xeb}

// HasPiOUI reports whether mac starts with a Raspberry Pi OUI.
func HasPiOUI(mac net.HardwareAddr) bool {
	if len(mac) < 3 {
		return false
	}
	for _, o := range PiOUIs {
		if mac[0] == o[0] && mac[1] == o[1] && mac[2] == o[2] {
			return true
		}
	}
	return false
}

func hasOldPiOUI(mac net.HardwareAddr) bool {
	return len(mac) >= 3 && mac[0] == oldPiOUI[0] && mac[1] == oldPiOUI[1] && mac[2] == oldPiOUI[2]
}

// Option codes the library has no names for.
const (
	optClientGUID  = 97  // client machine identifier (PXE)
	optIPXEEncap   = 175 // iPXE's encapsulated options
	optUserClass   = 77
	optVendorClass = 60
	optClientArch  = 93
)

var (
	pi3BGUID   = append([]byte{0}, bytes.Repeat([]byte{0x44}, 16)...)
	fourccPi4  = []byte("RPi4")
	fourccPi5  = []byte("RPi5")
	ipxeMarker = []byte("iPXE")
)

// Classify tells what kind of client sent p. It is a pure function of the
// packet: Pis by option 60 "PXEClient" plus the option 97 magic ("RPi4",
// "RPi5") or a Pi MAC OUI with the ROM's option 97 forms — never by OUI
// alone; iPXE by option 175 or 77 (its option 60 is the same as a Pi's).
func Classify(p *dhcpv4.DHCPv4) Client { return classify(p.ClientHWAddr, libOptions(p.Options)) }

// options is where classify reads a packet's options: the server's own
// packet, or the library's map (Classify).
type options interface {
	option(code uint8) []byte
}

type libOptions dhcpv4.Options

// option tells a present option with no value (non-nil, empty) from an
// absent one (nil), as Options.Has does.
func (o libOptions) option(code uint8) []byte {
	v, ok := o[code]
	if ok && v == nil {
		return []byte{}
	}
	return v
}

func classify(mac net.HardwareAddr, p options) Client {
	var c Client
	c.VendorClass = string(p.option(optVendorClass))
	if arch := p.option(optClientArch); len(arch) >= 2 {
		c.Arch, c.HasArch = binary.BigEndian.Uint16(arch), true
	}
	if isIPXE(p) {
		c.Class = ClassIPXE
		return c
	}
	if !strings.HasPrefix(c.VendorClass, "PXEClient") {
		c.Class = ClassOS
		return c
	}
	guid := p.option(optClientGUID)
	if len(guid) == 17 && guid[0] == 0 {
		// Pi 4/5 (EEPROM default since 2020): 00, fourcc, board revision
		// (LE), low 4 bytes of the MAC, serial (LE).
		switch {
		case bytes.Equal(guid[1:5], fourccPi4):
			c.Class = ClassPi4
		case bytes.Equal(guid[1:5], fourccPi5):
			c.Class = ClassPi5
		}
		if c.Class != ClassOS {
			c.BoardRevision = binary.LittleEndian.Uint32(guid[5:9])
			c.Serial = fmt.Sprintf("%08x", binary.LittleEndian.Uint32(guid[13:17]))
			return c
		}
	}
	if !HasPiOUI(mac) {
		c.Class = ClassPXE
		return c
	}
	serial, repeated := repeatedSerial(guid)
	switch {
	case hasOldPiOUI(mac) && bytes.Equal(guid, pi3BGUID):
		c.Class = ClassPi3B
	case hasOldPiOUI(mac) && repeated:
		c.Class, c.Serial = ClassPi3BPlus, serial
	case hasOldPiOUI(mac) && !requestsRouter(p):
		// No usable option 97, but only the 3B ROM leaves out options 1
		// and 3 from its request list.
		c.Class = ClassPi3B
	case hasOldPiOUI(mac):
		c.Class = ClassPi3BPlus
	case repeated:
		// A Pi 4 EEPROM before 2020 (or DHCP_OPTION97=0) sends the old
		// repeated-serial form.
		c.Class, c.Serial = ClassPi4, serial
	default:
		c.Class = ClassPi
	}
	return c
}

// repeatedSerial decodes the ROM's option 97: 00 + the 4-byte serial
// (little-endian) four times.
func repeatedSerial(guid []byte) (string, bool) {
	if len(guid) != 17 || guid[0] != 0 || bytes.Equal(guid, pi3BGUID) {
		return "", false
	}
	s := guid[1:5]
	for i := 5; i < 17; i += 4 {
		if !bytes.Equal(guid[i:i+4], s) {
			return "", false
		}
	}
	return fmt.Sprintf("%08x", binary.LittleEndian.Uint32(s)), true
}

func requestsRouter(p options) bool {
	prl := p.option(dhcpv4.OptionParameterRequestList.Code())
	return bytes.IndexByte(prl, 1) >= 0 || bytes.IndexByte(prl, 3) >= 0
}

// isIPXE recognises iPXE by its feature option 175 or its user class 77,
// which iPXE sends as the 4 raw bytes "iPXE" rather than RFC 3004's
// length-prefixed form (both are accepted).
func isIPXE(p options) bool {
	if p.option(optIPXEEncap) != nil {
		return true
	}
	uc := p.option(optUserClass)
	if bytes.Equal(uc, ipxeMarker) {
		return true
	}
	// RFC 3004: a list of (length, data) items.
	for len(uc) > 0 {
		n := int(uc[0])
		if n == 0 || 1+n > len(uc) {
			return false
		}
		if bytes.Equal(uc[1:1+n], ipxeMarker) {
			return true
		}
		uc = uc[1+n:]
	}
	return false
}
