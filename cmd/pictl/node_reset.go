package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/controller"
)

// nodeReset discards a node's own layer through the running controller
// (which knows whether the node is mounted), or, with none running, on the
// state directory.
func nodeReset(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("node reset %s: %w", name, err)
	}
	force := c.Bool("force")
	_, err = apiClient(c, cl).ResetNode(c.Context, name, force)
	if api.IsNotRunning(err) {
		if err := controller.ResetNodeOffline(storeFor(c), name, nil); err != nil {
			return fmt.Errorf("node reset %s: %w", name, err)
		}
		fmt.Fprintf(c.App.Writer, "%s: own layer discarded (controller not running: if %s is still up, reboot it once pictl serve runs)\n", name, name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("node reset %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "%s: own layer discarded; it boots from its image and role again\n", name)
	return nil
}
