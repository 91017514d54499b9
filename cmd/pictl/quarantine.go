package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func nodeClearQuarantineCommand() *cli.Command {
	return &cli.Command{
		Name:      "clear-quarantine",
		Usage:     "free an address a DHCPDECLINE quarantined (the node's reserved one, or the address given)",
		ArgsUsage: "NAME|ADDRESS",
		Description: `A client that finds its address in use by another host declines it, and the
address stays out of the pool for an hour. A node's reserved address is never
quarantined any more (such a DECLINE is logged and ignored); this frees one
quarantined before, or a pool address once the conflict is gone.

   pictl node clear-quarantine pi3
   pictl node clear-quarantine 10.99.0.150`,
		BashComplete: completeNodeNames,
		Action:       nodeClearQuarantine,
	}
}

func nodeClearQuarantine(c *cli.Context) error {
	target, err := oneArg(c, "NAME|ADDRESS")
	if err != nil {
		return err
	}
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("node clear-quarantine %s: %w", target, err)
	}
	res, err := apiClient(c, cl).ClearQuarantine(c.Context, target)
	if err != nil {
		return fmt.Errorf("node clear-quarantine %s: %w", target, err)
	}
	if !res.WasQuarantined {
		fmt.Fprintf(c.App.Writer, "%s: %s was not quarantined\n", target, res.Address)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "%s: quarantine of %s cleared; it is free again\n", target, res.Address)
	return nil
}
