// Package nfsd serves diskless nodes their root file systems, and shared
// volumes, over NFSv3, on github.com/willscott/go-nfs.
//
// # Exports
//
//	/nodes/<name>    the node's root, mountable only from the node's address
//	/volumes/<name>  a shared tree, mountable by nodes whose Node.Volumes lists it
//
// NFS and MOUNT share one TCP port (Config.Addr, default 2049); there is no
// portmapper and no NLM, so clients mount with
// vers=3,proto=tcp,port=P,mountport=P,nolock. MOUNT decides who may mount
// what (MNT3ERR_ACCES plus a log line otherwise); every later call is
// checked again against the client's address (a handle of another node's
// export is NFS3ERR_STALE), and file handles carry a MAC so a client can
// only use handles the server gave it.
//
// # Users
//
// Calls act as the caller: AUTH_UNIX uid, gid and groups (AUTH_NONE as the
// anonymous user, Config.AnonUID/AnonGID, or refused with
// Config.RefuseAuthNone). A node's root is its own file system: its root is
// root. Volumes squash as knfsd's export options (Volume.Squash: root_squash
// by default, none, all; AnonUID/AnonGID). Permissions are checked as the
// Linux VFS checks them for knfsd (perm.go), new objects belong to the
// caller, set-ID bits are cleared as the kernel clears them.
//
// # A node's root is composed, not copied
//
// Three layers, top first: the node's own layer (writable, persistent under
// Config.LayerDir), its role layer (Node.RoleLayer, read-only, rendered by
// the roles package), the image root (Node.ImageRoot, read-only, shared by
// every node on the image). The rules are overlayfs's, and so is the
// on-disk format (whiteout = char device 0:0, opaque directory =
// trusted.overlay.opaque=y): writes copy the file up (content, owner,
// mode, times, xattrs), deletions leave whiteouts, a directory recreated
// over a deleted one is opaque, a directory renamed away from lower layers
// takes its subtree along (copied up), listings merge layers with each name
// once. A new node costs one empty directory. Server.Reset discards a
// node's own layer.
//
// # Handles
//
// A handle is (export number, file identity, MAC). The identity never
// depends on the path: a lower file is named by its inode in the image, a
// file created by the node by a sequence number kept in a trusted.pictl.id
// xattr, a role-layer file by its path in the role tree. Copy-up keeps the
// identity (the xattr holds the lower one), a rename writes one record
// (parent identity, name) to the runtime database. Resolving a handle
// walks parent records to the root (cached, verified against the tree on
// every use), so handles resolve in time independent of how many exist,
// are never evicted, and survive renames and restarts. The MAC key is
// <StateDir>/nfsd/handle.key.
//
// # Around go-nfs
//
// Below go-nfs, a fan-out listener serves each client connection with
// several go-nfs workers (go-nfs alone answers one request at a time) and
// shows every NFS call to nfsd first (calls.go). nfsd answers every NFSv3
// procedure itself — go-nfs gets credentials, permissions, ownership,
// modes, times, LINK, MKNOD, exclusive CREATE, directory cookies, fsid and
// the file system statistics wrong — READ straight from the file into the
// reply (go-nfs copies each READ four times), LOOKUP, GETATTR and ACCESS
// from the resolution that checked the handle. go-nfs keeps the server
// loop, NULL, MOUNT and the calls nfsd cannot decode (GO_NFS_DEFECTS.md).
// Read-only files stay open for a few seconds so the kernel's readahead
// sees sequential streams; image and role-layer files are shared by every
// node on the image. File data is fdatasync'ed before a FILE_SYNC WRITE
// (and an UNSTABLE one that holds the whole file) is answered, otherwise
// at the client's COMMIT; namespace changes and identity records are
// flushed every
// Config.MetadataFlush (or before each reply with Config.SyncMetadata).
// go-nfs allocates a buffer per request while nfsd keeps little live heap:
// run the process with GOGC=400 (or a memory limit) rather than Go's 100.
//
// # What go-nfs still gets wrong
//
// See GO_NFS_DEFECTS.md: each entry names the test that shows it.
package nfsd
