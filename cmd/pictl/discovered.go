package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/urfave/cli/v2"
	"go.etcd.io/bbolt"

	"github.com/pictl/pictl/dhcpd"
	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
	"github.com/pictl/pictl/internal/controller"
)

// discoveredClients lists the clients that asked to boot but are not in
// cluster.yaml: from the running controller, or from its runtime database
// when it is stopped.
func discoveredClients(c *cli.Context, cl *cluster.Cluster) ([]api.Discovered, error) {
	list, err := apiClient(c, cl).Discovered(c.Context)
	if err == nil || !api.IsNotRunning(err) {
		return list, err
	}
	db, path, err := controller.OpenRuntimeDB(cl.Controller.StateDir)
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("runtime database %s is busy but the controller's API does not answer", path)
	}
	if err != nil {
		return nil, nil //nolint:nilerr // no database yet: nothing was discovered
	}
	defer db.Close()
	st, err := dhcpd.OpenStore(db)
	if err != nil {
		return nil, err
	}
	recs, err := st.Discovered()
	if err != nil {
		return nil, err
	}
	out := []api.Discovered{}
	for _, d := range recs {
		if _, _, known := cl.NodeByMAC(d.MAC); known {
			continue
		}
		out = append(out, api.Discovered{MAC: d.MAC.String(), Serial: d.Serial, Model: d.Class.String(),
			Interface: d.Interface, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen})
	}
	return out, nil
}

func discoveredList(c *cli.Context) error {
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("node ls --discovered: %w", err)
	}
	list, err := discoveredClients(c, cl)
	if err != nil {
		return fmt.Errorf("node ls --discovered: %w", err)
	}
	if list == nil {
		list = []api.Discovered{}
	}
	now := time.Now()
	return emit(c, list, func(w io.Writer) error {
		t := newTable(w, "MAC", "SERIAL", "KIND", "INTERFACE", "FIRST SEEN", "LAST SEEN")
		for _, d := range list {
			t.row(d.MAC, d.Serial, d.Model, d.Interface, ago(now, d.FirstSeen), ago(now, d.LastSeen))
		}
		return t.flush()
	})
}

// adoptFields fills node add's fields from a discovered client: its MAC,
// serial and model, unless the flags say otherwise.
func adoptFields(c *cli.Context, cl *cluster.Cluster, fields map[string]any) error {
	mac, err := net.ParseMAC(c.String("from"))
	if err != nil {
		return fmt.Errorf("--from %q is not a MAC address", c.String("from"))
	}
	list, err := discoveredClients(c, cl)
	if err != nil {
		return err
	}
	for _, d := range list {
		if d.MAC != mac.String() {
			continue
		}
		if _, set := fields["mac"]; !set && fields["macs"] == nil {
			fields["mac"] = d.MAC
		}
		if _, set := fields["serial"]; !set && d.Serial != "" {
			fields["serial"] = d.Serial
		}
		if _, set := fields["model"]; !set {
			if m := modelOfClass(d.Model); m != "" {
				fields["model"] = m
			}
		}
		return nil
	}
	return fmt.Errorf("--from %s: no discovered client has that MAC (see pictl node ls --discovered)", mac)
}

// modelOfClass maps dhcpd's client classes to cluster.yaml models.
func modelOfClass(class string) string {
	switch class {
	case "pi3b":
		return "pi3"
	case "pi3b+":
		return "pi3+"
	case "pi4", "pi5":
		return class
	case "ipxe":
		return "x86"
	}
	return ""
}
