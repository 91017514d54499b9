// Package tftpd is pictl's TFTP server: it maps every read request to a
// node and a file in that node's boot tree, serves the node's image boot
// files confined to the image's boot directory, and renders the per-node
// files (cmdline.txt, config.txt, boot.ipxe) on every request.
//
// It is built on github.com/pin/tftp/v3 and adds what that library leaves
// to its users: name cleaning and confinement (the library passes names
// through untouched), client-safe error texts (the library sends handler
// error text to the client), read-only operation, per-client transfer
// limits, outcome classification (the Raspberry Pi's tsize probe that aborts
// after the OACK is not a failure), boot stage tracking and metrics.
//
// The package knows nothing of cluster.yaml: node information comes from a
// [Nodes] implementation consulted on every request, boot stages and unknown
// clients go to a [Recorder]. [StageStore] is a [Recorder] backed by the
// controller's bbolt runtime database.
//
// # Request routing
//
// A request name is first cleaned (see [CleanName]), then the routes are
// tried in order; the first that claims the request decides:
//
//   - "<serial>/<file>": 8 lowercase hex digits, the low 32 bits of a
//     Raspberry Pi serial (the Pi's default TFTP prefix);
//   - "<mac>/<file>": a dashed lowercase MAC, as EEPROM TFTP_PREFIX=2 sends;
//   - "<file>": no prefix, the client is found by its address (the node's
//     lease or reservation, else the kernel's neighbour table's MAC).
//
// Within a node's tree, "cmdline.txt" and "config.txt" (Raspberry Pi images)
// and "boot.ipxe" (kernel+initrd images) are rendered; every other name is a
// file in the image's boot directory.
package tftpd
