// Package agent is `pictl agent`, the small service on every node that
// switches the node's role live, and the controller's listener it talks to.
// The agent long-polls the listener for the node's desired role layer,
// waits until that layer is visible through its NFS root, reloads systemd,
// isolates the role's target and reports the target's and its units'
// states back.
package agent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Desired is what the controller wants a node to run.
type Desired struct {
	Role string `json:"role"` // "" = no role
	// Target is the systemd target to isolate (roles.TargetName, or
	// multi-user.target for no role).
	Target string `json:"target"`
	// Layer identifies the node's role layer; the agent knows the layer
	// is visible when LayerIDFile in its root holds this value.
	Layer string `json:"layer"`
	// Reboot: switch by rebooting into the new default.target instead of
	// isolating the target live.
	Reboot bool `json:"reboot,omitempty"`
}

// LayerIDFile is where a role layer names itself, relative to the node's
// root. The controller writes it into every layer it materialises.
const LayerIDFile = "etc/pictl/role-hash"

// States a report can carry.
const (
	StateSwitching = "switching"
	StateActive    = "active"
	StateFailed    = "failed"
)

// Report is what the agent tells the controller after (or during) a switch.
type Report struct {
	Layer  string      `json:"layer"` // the layer the states below belong to
	Role   string      `json:"role"`
	Target string      `json:"target"`
	State  string      `json:"state"` // switching, active, failed
	Units  []UnitState `json:"units,omitempty"`
	// Failed is the first unit of the target that failed, "" when none.
	Failed string `json:"failed,omitempty"`
	// Error is why the switch failed when no unit did (layer never
	// became visible, systemd refused the job...).
	Error  string `json:"error,omitempty"`
	Stages Stages `json:"stages,omitzero"`
}

// UnitState is one unit's state as systemd reports it.
type UnitState struct {
	Name   string `json:"name"`
	Active string `json:"active"` // active, failed, activating, inactive...
	Sub    string `json:"sub,omitempty"`
}

// Stages times the parts of a switch on the node.
type Stages struct {
	LayerVisible time.Duration `json:"layer_visible,omitempty"`
	Reload       time.Duration `json:"reload,omitempty"`
	Isolate      time.Duration `json:"isolate,omitempty"`
	// Refresh is the same-role update: the target started again and its
	// reloadable units reloaded (instead of Isolate).
	Refresh time.Duration `json:"refresh,omitempty"`
	Settle  time.Duration `json:"settle,omitempty"`
}

// NodeToken is node's credential for the agent listener: an HMAC of the
// controller's agent secret and the node name, so the controller stores
// no per-node secret and a node's token opens no other node's state (and
// never the admin API).
func NodeToken(secret []byte, node string) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "pictl-agent\x00%s", node)
	return hex.EncodeToString(m.Sum(nil))
}

// validToken compares in constant time.
func validToken(secret []byte, node, token string) bool {
	want := NodeToken(secret, node)
	return hmac.Equal([]byte(want), []byte(token))
}
