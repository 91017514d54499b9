package nfsroot

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pictl/pictl/nfsd"
	"github.com/pictl/pictl/test/vm"
)

// epochTimes gives every file and directory of a layer the fixed mtime
// roles.Tree.WriteDir gives them: two generations of a role layer then
// differ in nothing the kernel client's attribute cache looks at, unless
// nfsd says so.
func epochTimes(t *testing.T, dir string) {
	t.Helper()
	epoch := time.Unix(0, 0)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, epoch, epoch)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A guest that wrote into /etc/systemd/system (so its own layer holds a
// copy of the directory above the role layer's) still sees a swapped role
// layer's new unit files, its removals and a same-size file's new content
// within a few seconds, on default mount options (acdirmin 30 s), when it
// opens them as the agent and systemd's daemon-reload do: what the agent
// relies on before it reloads systemd.
func TestKernelClientRoleLayerSwap(t *testing.T) {
	n := vm.NewNet(t, "roleswap")
	a := vm.PrepareT(t)
	img := image(t)
	c := newCluster()
	nd := node{"node1", n.GuestAddr(0)}

	script := `echo mine > /etc/systemd/system/local.conf
chk copied-up 'test "$(cat /etc/systemd/system/local.conf)" = mine'
chk gen1-seen 'test "$(cat /etc/pictl/role-hash)" = gen1 && test -e /etc/systemd/system/pictl-role-web.target'
# Fill the client's caches: the listing, a negative lookup, file pages.
ls -la /etc/systemd/system /etc/pictl >/dev/null
test -e /etc/systemd/system/pictl-role-db.target
cat /etc/hostname /etc/pictl/role-hash >/dev/null
wait_host swap
st swapped
# As the agent and systemd's daemon-reload do: open the file and the
# directories (close-to-open: the client asks the server for their
# attributes on every open, and a changed mtime drops its caches).
i=0
while [ $i -lt 600 ]; do
  if test "$(cat /etc/pictl/role-hash)" = gen2 && ls /etc/systemd/system | grep -qx pictl-role-db.target; then break; fi
  sleep 0.1; i=$((i+1))
done
st visible "polls=$i"
chk new-unit-within-10s 'test $i -lt 100'
chk new-unit 'test -e /etc/systemd/system/pictl-role-db.target && test "$(cat /etc/systemd/system/pictl-role-db.target)" = "[Unit]"'
chk old-unit-gone '! test -e /etc/systemd/system/pictl-role-web.target'
chk same-size-content 'test "$(cat /etc/pictl/role-hash)" = gen2'
chk listing 'ls /etc/systemd/system | grep -qx pictl-role-db.target && ! ls /etc/systemd/system | grep -qx pictl-role-web.target'
chk own-file-kept 'test "$(cat /etc/systemd/system/local.conf)" = mine'
chk hostname-new 'test "$(cat /etc/hostname)" = node1b'`
	spec := vm.RootfsSpec{Script: script}
	gen1 := roleLayer(t, spec, map[string]string{
		"etc/hostname":                              "node1\n",
		"etc/pictl/role-hash":                       "gen1\n",
		"etc/systemd/system/pictl-role-web.target":  "[Unit]\n",
		"etc/systemd/system/nginx.service.d/x.conf": "[Unit]\n",
	})
	gen2 := roleLayer(t, spec, map[string]string{
		"etc/hostname":                            "node1b\n",
		"etc/pictl/role-hash":                     "gen2\n",
		"etc/systemd/system/pictl-role-db.target": "[Unit]\n",
	})
	epochTimes(t, gen1)
	epochTimes(t, gen2)
	c.add(nfsd.Node{Name: nd.name, ImageRoot: img, RoleLayer: gen1}, nd.addr.Addr())
	startController(t, n, c)

	res := boot(t, n, a, nd, 6*time.Minute, func(_ context.Context, name string) error {
		if name != "swap" {
			return fmt.Errorf("unexpected wait %q", name)
		}
		c.add(nfsd.Node{Name: nd.name, ImageRoot: img, RoleLayer: gen2}, nd.addr.Addr())
		return nil
	})
	vm.RequirePassed(t, res)
	if s0, ok := res.Stage("swapped"); ok {
		if s1, ok := res.Stage("visible"); ok {
			t.Logf("new role layer visible %.2f s after the swap (guest uptime; %s)", s1.Uptime-s0.Uptime, s1.Detail)
		}
	}
}
