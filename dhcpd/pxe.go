package dhcpd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PiBootLabel is the boot menu label a Raspberry Pi bootloader looks for in
// option 43 (EEPROM PXE_OPTION43 can change it on a Pi 4/5; not on a Pi 3).
const PiBootLabel = "Raspberry Pi Boot"

// PXE vendor sub-options (option 43, PXE spec 2.1 table 2-1).
const (
	pxeDiscoveryControl = 6
	pxeBootMenu         = 9
	pxeMenuPrompt       = 10
	pxeEnd              = 255
)

// PiVendorOptions returns option 43 as dnsmasq encodes
// `pxe-service=0,"Raspberry Pi Boot"`: discovery control 3, menu prompt
// (timeout 0, "PXE"), one boot menu item (type 0, the label), end (0xFF).
// With padded the label carries three trailing spaces, as LTSP sends it:
// the Pi 3B ROM had a length bug the padding works around and later
// bootloaders ignore the trailing characters.
func PiVendorOptions(padded bool) []byte {
	label := PiBootLabel
	if padded {
		label += "   "
	}
	b := make([]byte, 0, 16+len(label))
	b = append(b, pxeDiscoveryControl, 1, 3)
	b = append(b, pxeMenuPrompt, 4, 0, 'P', 'X', 'E')
	b = append(b, pxeBootMenu, byte(3+len(label)), 0, 0, byte(len(label)))
	b = append(b, label...)
	return append(b, pxeEnd)
}

// PXEMenuItem is one entry of option 43's boot menu (sub-option 9).
type PXEMenuItem struct {
	Type  uint16
	Label string
}

// PXEVendorOptions is a decoded option 43.
type PXEVendorOptions struct {
	DiscoveryControl    uint8
	HasDiscoveryControl bool
	MenuTimeout         uint8
	MenuPrompt          string
	Menu                []PXEMenuItem
	// Terminated says the option ended with the 0xFF end sub-option.
	Terminated bool
}

// ErrBadVendorOptions is returned for an option 43 that does not decode.
var ErrBadVendorOptions = errors.New("malformed PXE vendor options")

// DecodePXEVendorOptions decodes option 43 in the PXE encapsulation (what
// a Pi bootloader or a PXE ROM reads). Unknown sub-options are skipped.
func DecodePXEVendorOptions(b []byte) (PXEVendorOptions, error) {
	var v PXEVendorOptions
	for len(b) > 0 {
		code := b[0]
		if code == 0 { // pad
			b = b[1:]
			continue
		}
		if code == pxeEnd {
			v.Terminated = true
			return v, nil
		}
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			return v, fmt.Errorf("%w: sub-option %d truncated", ErrBadVendorOptions, code)
		}
		data := b[2 : 2+int(b[1])]
		b = b[2+int(b[1]):]
		switch code {
		case pxeDiscoveryControl:
			if len(data) != 1 {
				return v, fmt.Errorf("%w: discovery control length %d", ErrBadVendorOptions, len(data))
			}
			v.DiscoveryControl, v.HasDiscoveryControl = data[0], true
		case pxeMenuPrompt:
			if len(data) < 1 {
				return v, fmt.Errorf("%w: empty menu prompt", ErrBadVendorOptions)
			}
			v.MenuTimeout, v.MenuPrompt = data[0], string(data[1:])
		case pxeBootMenu:
			for len(data) > 0 {
				if len(data) < 3 || len(data) < 3+int(data[2]) {
					return v, fmt.Errorf("%w: boot menu item truncated", ErrBadVendorOptions)
				}
				v.Menu = append(v.Menu, PXEMenuItem{
					Type:  binary.BigEndian.Uint16(data),
					Label: string(data[3 : 3+int(data[2])]),
				})
				data = data[3+int(data[2]):]
			}
		}
	}
	return v, nil
}

// ipxeNoPXEDHCP is option 175 with sub-option 176 (no-pxedhcp) = 1: iPXE
// then does not wait ~3 s for ProxyDHCP offers.
var ipxeNoPXEDHCP = []byte{176, 1, 1}
