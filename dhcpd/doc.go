// Package dhcpd is pictl's DHCPv4 server: full mode (pictl owns the subnet:
// pool, reservations, durable leases) or proxy mode (another server hands out
// addresses; pictl adds only the PXE answer for clients it may boot).
//
// It recognises what is asking (Raspberry Pi 3B / 3B+ / 4 / 5 boot ROMs and
// bootloaders, iPXE, other PXE ROMs, operating systems and initramfs DHCP
// clients, see Classify) and answers each with what it needs to netboot
// (PROTOCOLS.md in the project's shared notes has the byte-level facts).
//
// The package knows nothing of cluster.yaml: node facts come through the
// Nodes interface on every packet, settings through Config, runtime state
// (leases, discovered clients) lives in buckets of a bbolt database the
// caller opens. A granted lease is durable before the ACK leaves, in group
// commits: appended to a lease journal next to the database and
// fdatasync'ed, then moved into the database in the background (see
// journal.go; Config.DirectCommit writes each commit to bbolt instead), so
// a kill -9 never forgets one.
//
// Lifecycle: New validates the configuration, Listen opens every socket (so a
// test can open them inside a network namespace), Serve runs until its
// context is cancelled. RAResponder is an optional IPv6 router-advertisement
// responder for the boot interface (iPXE waits 13 s for an RA otherwise).
package dhcpd
