package tftpd

import (
	"fmt"
	"net/netip"
	"time"
)

// Config holds the server settings. The zero value is usable: every field
// has a documented default.
type Config struct {
	// Addr is the UDP address to listen on. Default ":69" (all IPv4
	// addresses; replies leave from the address a request arrived on).
	Addr string
	// MaxBlockSize caps the blksize a client may negotiate, 513..65464.
	// Default 1468 (the Pi asks 1024 to 1468, iPXE 1432; 1468 + 32 bytes of
	// headers fits an Ethernet MTU). The interface MTU caps it further.
	MaxBlockSize int
	// Timeout is how long to wait for an ACK before resending a packet.
	// Default 1s (the library's 5s would stall a boot 5s per lost packet).
	Timeout time.Duration
	// Retries is how many times a packet is sent before the transfer is
	// abandoned. Default 5.
	Retries int
	// MaxTransfersPerClient limits concurrent transfers from one client
	// address; more get an error. Default 8 (boot clients fetch one file at
	// a time; the Pi's tsize probe briefly overlaps two).
	MaxTransfersPerClient int
	// NFSServer is the address written into nfsroot= (cmdline.txt,
	// boot.ipxe). Invalid (zero) means the address the TFTP request arrived
	// on, which is right whenever NFS and TFTP share the controller address.
	NFSServer netip.Addr
	// NFSPort is the NFS and MOUNT port (port= and mountport=). Default 2049.
	NFSPort uint16
	// CacheBytes is the memory kept for boot file contents (kernels,
	// firmware, DTBs), so transfers cost no read per block and a boot storm
	// reads each file from disk once. Default 256 MiB; negative disables.
	CacheBytes int64
	// CacheMaxFileBytes: larger files are read from disk on each transfer.
	// Default 64 MiB.
	CacheMaxFileBytes int64
	// Window is how many blocks go out before their ACKs are awaited, for
	// clients shown to take blocks ahead of their ACKs: WindowClients and
	// nodes booting through iPXE (see window.go). Raspberry Pis are always
	// sent one block at a time. Default 8 (at most 60); 1 or negative:
	// every client lock-step.
	Window int
	// WindowClients are IPv4 prefixes always sent windowed (PCs running
	// iPXE, curl or tftp-hpa), in addition to the learned iPXE nodes.
	WindowClients []netip.Prefix
	// Routes replaces the default routing (DefaultRoutes with the kernel's
	// neighbour table of the listening namespace). Nil = default.
	Routes []Route
}

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = ":69"
	}
	if c.MaxBlockSize == 0 {
		c.MaxBlockSize = 1468
	}
	if c.MaxBlockSize <= 512 || c.MaxBlockSize > 65464 {
		return c, fmt.Errorf("tftpd: MaxBlockSize %d out of range 513..65464", c.MaxBlockSize)
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.Retries <= 0 {
		c.Retries = 5
	}
	if c.MaxTransfersPerClient <= 0 {
		c.MaxTransfersPerClient = 8
	}
	if c.Window == 0 {
		c.Window = 8
	}
	if c.Window > 60 {
		return c, fmt.Errorf("tftpd: Window %d above pin/tftp's maximum of 60 blocks", c.Window)
	}
	if c.NFSPort == 0 {
		c.NFSPort = 2049
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 256 << 20
	}
	if c.CacheMaxFileBytes <= 0 {
		c.CacheMaxFileBytes = 64 << 20
	}
	return c, nil
}
