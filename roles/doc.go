// Package roles turns a node's role into the files of its role layer.
//
// A role is data: a YAML definition plus text/template files. The
// built-ins (web, db, lb, router) are embedded; user roles live in a
// directory beside cluster.yaml, as NAME.yaml or NAME/role.yaml, and may
// extend a built-in. A definition:
//
//	description: what the role is for
//	extends: web                       # user roles only: start from a built-in
//	vars: {port: "3306", vip: ~}       # defaults; ~ = must be set in cluster.yaml
//	packages: [nginx-light|nginx-core] # the image must hold one of each line
//	mounts:                            # shared volumes served by pictl's nfsd
//	  www: {path: /srv/www, mode: ro}
//	units:                             # units the role wants
//	  nginx.service:
//	    mounts: [www]                  # RequiresMountsFor= its mount point
//	    dropin: {Service: [LimitNOFILE=4096]}
//	  shop.service:
//	    unit: {Service: [ExecStart=/usr/bin/shop]}   # a unit the role writes
//	  ssh.service: {shared: true}      # not masked on nodes of other roles, not PartOf= the target
//	tmpfiles: [d /var/log/nginx 0755 root adm -]
//	files:
//	  /etc/nginx/conf.d/site.conf: {template: site.conf.tmpl, mode: "0644"}
//	  /etc/motd: {content: "{{.Node.Name}} is a {{.Role}} node\n"}
//	  /etc/nginx/sites-enabled/default: {remove: true}   # a whiteout
//	balancer: {port: 8000, check: {type: http, path: /, interval: 2s, timeout: 1s}}
//
// Setting values, tmpfiles lines and files are templates (see
// templateData for what they see); a value a template inserts into a unit
// file is not escaped, so write {{unitEscape .Vars.x}} for data that may
// hold %. Every error in a role file names file:line:column (text/template
// gives no column for syntax errors: file:line).
//
// Render is pure: the same node, facts and catalog give the same bytes and
// so the same Tree.Hash. Unit files are written by go-systemd's unit
// package. Stopping a role's target undoes the role: every unit it starts
// is PartOf= the target (except shared ones, which run under every role
// and keep running through a switch), mounts are StopWhenUnneeded=, and a
// role writes no state that outlives its units: files under /etc/sysctl.d,
// /etc/modules-load.d, /etc/modprobe.d and /etc/binfmt.d are refused (set
// such state from a unit whose ExecStop= undoes it). tmpfiles.d entries
// (directories a service needs) stay when the target stops.
package roles
