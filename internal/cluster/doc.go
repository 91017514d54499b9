package cluster

// The cluster.yaml schema. Every key is optional except controller.address;
// unknown keys are errors (with the closest known key suggested). Values
// are read as written, without YAML type guessing: serial: 12345678 and
// mac: dc:a6:32:01:36:c2 are text whether quoted or not. Anchors, aliases
// and merge keys (<<: *base) work.
//
//	controller:
//	  interfaces: [br0]        # or interface: br0; the boot network's NICs
//	  address: 10.99.0.1/24    # required: this host's address + prefix = the boot subnet
//	  state_dir: /var/lib/pictl
//	  api_socket: /run/pictl/pictl.sock
//	ports:                     # 0 or absent = default
//	  tftp: 69                 # UDP
//	  nfs: 2049                # TCP; nfs, balancer and api must differ
//	  balancer: 80
//	  api: 0                   # TCP API port; 0 = unix socket only
//	dhcp:
//	  mode: full               # full | proxy | off
//	  range: 10.99.0.100-10.99.0.199   # full mode only; FIRST-LAST inside the subnet
//	  router: 10.99.0.1        # handed to nodes; inside the subnet
//	  dns: [10.99.0.1]         # or a single address
//	  domain: cluster.lan
//	  lease: 1h                # Go duration: 90s, 30m, 1h30m
//	  pi3_delay: 2s            # reply delay for Pi 3 boot ROMs, 0s..1m
//	tftp:
//	  window: 8                # blocks ahead of ACKs for iPXE nodes and window_clients; 1..60, 1 = lock-step
//	  window_clients: [10.99.0.64/26]  # always windowed (PCs; never Raspberry Pis)
//	discovery: record          # record | boot | ignore: what to do with unknown clients
//	images:
//	  NAME: {arch: arm64, boot: /abs/path, root: /abs/path, default: true, cmdline: "..."}
//	nodes:
//	  NAME: {mac: M, serial: S, model: pi4, arch: arm64, image: I, role: R, ip: A, netboot: true, cmdline: "..."}
//	                           # macs: [M1, M2] instead of mac: for several NICs
//	volumes:
//	  NAME: {readonly: true, path: /abs/path, roles: [web], nodes: [pi3]}
//	roles:
//	  NAME: {description: "...", vars: {VAR: value}}   # a built-in may be listed for its vars only
//	balancer:                  # the built-in balancer on ports.balancer; every key optional
//	  role: web                # members: this role's nodes (its balancer port), once active and healthy
//	  mode: http               # http (L7 proxy) | tcp (L4 splice)
//	  policy: least-conn       # least-conn | round-robin
//	  sticky_cookie: PICTLNODE # pin clients to a member by cookie (http only)
//	  weights: {pi3: 2}        # per-node share, 1..1000, default 1
//	  drain_timeout: 30s       # bound on draining a member that leaves
//	  check: {kind: http, path: /, status: 200, interval: 2s, timeout: 1s, rise: 2, fall: 3}
//	                           # overrides the role's health check field by field
//	  tls: {port: 443, cert: /abs/fullchain.pem, key: /abs/privkey.pem}
//	                           # a TLS listener (HTTP/2 and HTTP/1.1) for the same members
//
// Defaults (ApplyDefaults): ports tftp 69, nfs 2049, balancer 80, api 0;
// controller.state_dir /var/lib/pictl, controller.api_socket
// /run/pictl/pictl.sock; dhcp.mode full, dhcp.lease 1h, dhcp.pi3_delay 2s;
// discovery record; a volume's path <state_dir>/volumes/NAME. Image boot
// and root paths stay empty unless written (the image store decides).
// controller.interfaces stays empty unless written.
//
// Rules Load enforces, each reported at the offending node with a fix:
//   - names: nodes are hostnames (a-z, 0-9, '-', at most 63); images,
//     volumes and roles use a-z, 0-9, '.', '_', '-'; duplicate keys and
//     duplicate names are errors;
//   - controller.address: IPv4 with a /8../30 prefix, not the network or
//     broadcast address; state_dir and api_socket absolute;
//   - nodes: at least one MAC (unicast, not all zeros, 6 bytes), no MAC,
//     serial (compared by its last 8 hex digits, the TFTP prefix) or ip
//     used twice; serial 8 or 16 hex digits; ip inside the subnet and not
//     its network/broadcast address, the controller's address or the
//     router's; in full mode a node without ip: needs a dhcp.range (unless
//     netboot: false); model and arch from KnownModels/KnownArches; image
//     under images: (and of the node's arch); role built in
//     (BuiltinRoles), declared under roles:, or none;
//   - dhcp.range: full mode only, inside the subnet, not reversed, without
//     the network/broadcast, controller or router address. A node's ip may
//     lie inside the range (as in dnsmasq): the DHCP server must not lease
//     reserved addresses to other clients;
//   - at most one image with default: true; discovery: boot needs a
//     default image (or exactly one image);
//   - volumes' roles and nodes must exist; roles: may list a built-in role
//     only to give it vars (no description), none is not a role; var names
//     are letters, digits and _, values one line.
