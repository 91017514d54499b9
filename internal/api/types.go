// Package api is the controller's runtime API: HTTP over a unix socket
// and, when cluster.yaml sets ports.api, a token-authenticated TCP port;
// both also serve a status page for browsers at /. types.go holds the
// wire types the server and the CLI's client share.
package api

import "time"

// Status is GET /v1/status.
type Status struct {
	Version string    `json:"version" yaml:"version"`
	Started time.Time `json:"started" yaml:"started"`
	Config  string    `json:"config" yaml:"config"`
	// Generation counts the cluster.yaml states the controller has loaded;
	// it goes up by one on every successful reload.
	Generation uint64    `json:"generation" yaml:"generation"`
	LoadedAt   time.Time `json:"loaded_at" yaml:"loaded_at"`
	// ReloadError is why the newest cluster.yaml was rejected; the last good
	// state stays in force while it is set.
	ReloadError string            `json:"reload_error,omitempty" yaml:"reload_error,omitempty"`
	Nodes       int               `json:"nodes" yaml:"nodes"`
	Components  []ComponentStatus `json:"components" yaml:"components"`
}

// ComponentStatus is one server inside the controller (dhcpd, tftpd, ...).
type ComponentStatus struct {
	Name  string `json:"name" yaml:"name"`
	State string `json:"state" yaml:"state"` // starting, running, stopped, failed
	Error string `json:"error,omitempty" yaml:"error,omitempty"`
	// Detail says where it listens, e.g. for the API its socket and port.
	Detail string `json:"detail,omitempty" yaml:"detail,omitempty"`
}

// Node is one row of GET /v1/nodes and of `pictl node ls`: the desired
// state from cluster.yaml merged with what the controller has observed.
type Node struct {
	Name    string   `json:"name" yaml:"name"`
	MACs    []string `json:"macs" yaml:"macs"`
	Serial  string   `json:"serial,omitempty" yaml:"serial,omitempty"`
	Model   string   `json:"model,omitempty" yaml:"model,omitempty"`
	Arch    string   `json:"arch,omitempty" yaml:"arch,omitempty"`
	Image   string   `json:"image,omitempty" yaml:"image,omitempty"`
	Role    string   `json:"role,omitempty" yaml:"role,omitempty"`
	IP      string   `json:"ip,omitempty" yaml:"ip,omitempty"` // reserved address
	Netboot bool     `json:"netboot" yaml:"netboot"`

	Runtime *NodeRuntime `json:"runtime,omitempty" yaml:"runtime,omitempty"`
}

// NodeRuntime holds observed facts; nil when the controller is not running.
type NodeRuntime struct {
	// Address is where the node was last seen: its lease, or in proxy
	// mode (where another server leases) the source of its TFTP and NFS
	// requests.
	Address      string    `json:"address,omitempty" yaml:"address,omitempty"`
	LeaseIP      string    `json:"lease_ip,omitempty" yaml:"lease_ip,omitempty"`
	LeaseExpires time.Time `json:"lease_expires,omitzero" yaml:"lease_expires,omitempty"`
	BootStage    string    `json:"boot_stage,omitempty" yaml:"boot_stage,omitempty"`
	BootStageAt  time.Time `json:"boot_stage_at,omitzero" yaml:"boot_stage_at,omitempty"`
	LastSeen     time.Time `json:"last_seen,omitzero" yaml:"last_seen,omitempty"`
	// Role is the role switch's state; nil when no role machinery runs.
	Role *RoleStatus `json:"role,omitempty" yaml:"role,omitempty"`
}

// RoleStatus is where a node stands with its role: the layer the
// controller rendered for it and what the node's agent last reported.
type RoleStatus struct {
	Role   string `json:"role" yaml:"role"` // "" = none
	Target string `json:"target" yaml:"target"`
	// State: active, failed, switching, "not seen" (no agent report) or
	// lost (the agent, heard from before, has gone quiet: see Error).
	State string `json:"state" yaml:"state"`
	// Failed is the unit that failed; Error the agent's reason when no
	// unit did (layer never visible, systemd refused...).
	Failed string `json:"failed,omitempty" yaml:"failed,omitempty"`
	Error  string `json:"error,omitempty" yaml:"error,omitempty"`
	// Refused says why the controller keeps the old layer instead of the
	// role cluster.yaml asks for, with the command that fixes it.
	Refused string `json:"refused,omitempty" yaml:"refused,omitempty"`
	// Layer is the role layer the node should run; Applied the one its
	// agent last reported on.
	Layer      string    `json:"layer,omitempty" yaml:"layer,omitempty"`
	Applied    string    `json:"applied,omitempty" yaml:"applied,omitempty"`
	Since      time.Time `json:"since,omitzero" yaml:"since,omitempty"` // the layer became desired
	ReportedAt time.Time `json:"reported_at,omitzero" yaml:"reported_at,omitempty"`
	// LastContact is when the agent was last heard from (a long poll or
	// a report), given when it has no poll open.
	LastContact time.Time `json:"last_contact,omitzero" yaml:"last_contact,omitempty"`
	// Stages times the last switch: render (controller), layer_visible,
	// reload, isolate, settle (agent).
	Stages map[string]time.Duration `json:"stages,omitempty" yaml:"stages,omitempty"`
}

// Role states.
const (
	RoleActive    = "active"
	RoleFailed    = "failed"
	RoleSwitching = "switching"
	RoleNotSeen   = "not seen"
	RoleLost      = "lost"
)

// Summary is the role column of `pictl node ls`: "web active",
// "db failed: mariadb.service", "web switching", "agent not seen".
func (r *RoleStatus) Summary() string {
	if r == nil {
		return ""
	}
	role := r.Role
	if role == "" {
		role = "none"
	}
	switch r.State {
	case RoleNotSeen:
		return "agent not seen"
	case RoleLost:
		return role + " lost: " + r.Error
	case RoleFailed:
		why := r.Failed
		if why == "" {
			why = r.Error
		}
		return role + " failed: " + why
	}
	return role + " " + r.State
}

// Discovered is a client that asked to boot but is not in cluster.yaml.
type Discovered struct {
	MAC       string    `json:"mac" yaml:"mac"`
	Serial    string    `json:"serial,omitempty" yaml:"serial,omitempty"`
	Model     string    `json:"model,omitempty" yaml:"model,omitempty"`
	Interface string    `json:"interface,omitempty" yaml:"interface,omitempty"`
	FirstSeen time.Time `json:"first_seen" yaml:"first_seen"`
	LastSeen  time.Time `json:"last_seen" yaml:"last_seen"`
}

// Reset is the answer to POST /v1/nodes/{name}/reset: the node's own layer
// (its writes) is gone and it boots from its image and role layer again.
type Reset struct {
	Node   string `json:"node" yaml:"node"`
	Forced bool   `json:"forced" yaml:"forced"`
}
