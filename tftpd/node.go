package tftpd

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Nodes finds the node a request belongs to. It is called on every request,
// so an implementation backed by a swappable cluster snapshot makes reloads
// take effect without a restart.
//
// The discovery policy lives here too: an implementation that wants unknown
// clients to boot (policy "boot") returns a node for them; one that does not
// returns found=false and the client is reported to the [Recorder].
type Nodes interface {
	// LookupNode returns the node key identifies. found=false means no node
	// matches; err is for lookups that could not be answered (the client
	// then gets an error, and is not reported as unknown).
	LookupNode(ctx context.Context, key NodeKey) (n Node, found bool, err error)
}

// NodeKey identifies a client by exactly one of its fields.
type NodeKey struct {
	// Serial is the TFTP prefix a Pi sends: 8 lowercase hex digits, the low
	// 32 bits of its serial number (Pi 5 serials are 64-bit: match their
	// last 8 digits).
	Serial string
	// MAC comes from a dashed-MAC prefix or from the neighbour table.
	MAC net.HardwareAddr
	// IP is the request's source address (a lease or a reservation).
	IP netip.Addr
}

// String is for logs.
func (k NodeKey) String() string {
	switch {
	case k.Serial != "":
		return "serial " + k.Serial
	case k.MAC != nil:
		return "mac " + k.MAC.String()
	case k.IP.IsValid():
		return "ip " + k.IP.String()
	}
	return "nothing"
}

// Node is what tftpd needs to know about a node to serve its boot files.
type Node struct {
	Name   string
	MAC    net.HardwareAddr // primary MAC, for logs
	Serial string
	Model  string // pi3, pi4, pi5, x86, ... for logs
	// Netboot false makes every file "not found", so the node falls through
	// to its next boot mode (a Pi reads its start*.elf probe as missing).
	Netboot bool
	Image   Image
	// NFSExport is the path of the node's NFS root export; "" means
	// "/nodes/<Name>".
	NFSExport string
	// Cmdline is appended to the kernel command line after the image's.
	Cmdline string
	// ConfigTxt is appended to the image's config.txt (Pi images), in an
	// [all] section so it overrides what the image sets.
	ConfigTxt string
}

// ImageKind says how an image boots.
type ImageKind string

const (
	// ImagePi is a Raspberry Pi boot partition: firmware, config.txt,
	// cmdline.txt, DTBs, kernel*.img. The kernel mounts the NFS root itself.
	ImagePi ImageKind = "pi"
	// ImageKernelInitrd is a kernel and initramfs booted by iPXE; the
	// initramfs mounts the NFS root from the kernel-style nfsroot= argument.
	ImageKernelInitrd ImageKind = "kernel+initrd"
)

// Image is the part of a node's image tftpd serves.
type Image struct {
	Name string
	Kind ImageKind
	// BootDir is the host directory holding the image's boot files; nothing
	// outside it is ever served.
	BootDir string
	// Cmdline is appended to the kernel command line of every node on it.
	Cmdline string
	// Arch is the image's Debian architecture (amd64, arm64, armhf; ""
	// unknown): it chooses the default consoles.
	Arch string
	// Kernel and Initrd name the files boot.ipxe loads (ImageKernelInitrd),
	// relative to BootDir. Defaults "vmlinuz" and "initrd.img".
	Kernel string
	Initrd string
}

// Stage is a step of a node's boot, as seen from the files it fetched.
type Stage string

const (
	StageFirmware Stage = "firmware" // bootcode.bin, start*.elf, fixup*.dat
	StageConfig   Stage = "config"   // config.txt, cmdline.txt, autoboot.txt
	StageDTB      Stage = "dtb"      // device trees and overlays
	StageIPXE     Stage = "ipxe"     // the boot.ipxe script
	StageKernel   Stage = "kernel"
	StageInitrd   Stage = "initrd"
)

// StageEvent reports a transfer of a file that marks a boot stage.
type StageEvent struct {
	Node    string    `json:"node"`
	Stage   Stage     `json:"stage"`
	File    string    `json:"file"`
	Client  string    `json:"client"` // client IP
	Outcome Outcome   `json:"outcome"`
	Bytes   int64     `json:"bytes"`
	At      time.Time `json:"at"`
}

// UnknownClient is a client that asked for a file while no node matched.
type UnknownClient struct {
	IP     netip.Addr       `json:"ip"`
	MAC    net.HardwareAddr `json:"mac,omitempty"` // from a MAC prefix or the neighbour table
	Serial string           `json:"serial,omitempty"`
	File   string           `json:"file"`
	At     time.Time        `json:"at"`
}

// Recorder keeps boot stages and unknown clients. Calls come from transfer
// goroutines, concurrently; a call should return quickly (the client of an
// unknown-client report is waiting for its "not found").
type Recorder interface {
	RecordStage(ctx context.Context, ev StageEvent)
	RecordUnknown(ctx context.Context, c UnknownClient)
}
