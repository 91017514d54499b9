package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/api"
)

func lbCommand() *cli.Command {
	return &cli.Command{
		Name:  "lb",
		Usage: "the built-in balancer in front of the web nodes",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "list the balancer's members: state, requests in flight, totals, errors, latency",
				Description: `Members are the nodes of the balancer's role (balancer.role in cluster.yaml,
web by default) whose agent reports the role active; health checks then
decide. States: pending (first check not passed yet), up, ejected (passive
backoff after errors), down (checks failing), draining (no new requests,
its role is about to change), removed (left, finishing its requests), or
"role switching", "role failed", "role not seen" (its agent does not
report the role active: out of rotation). P50 and P99 are of the time from request head to
the end of the response, over the last minute (the Prometheus histogram keeps everything).`,
				Flags:  []cli.Flag{outputFlag()},
				Action: lbStatus,
			},
		},
	}
}

func lbStatus(c *cli.Context) error {
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("lb status: %w", err)
	}
	st, err := apiClient(c, cl).Balancer(c.Context)
	if api.IsNotRunning(err) {
		return errors.New("lb status: pictl serve is not running (the balancer runs inside it)")
	}
	if err != nil {
		return fmt.Errorf("lb status: %w", err)
	}
	return emit(c, st, func(w io.Writer) error {
		sticky := ""
		if st.StickyCookie != "" {
			sticky = ", sticky cookie " + st.StickyCookie
		}
		listen := st.Listen
		if st.TLSListen != "" {
			listen += ", tls " + st.TLSListen + " (HTTP/2, HTTP/1.1)"
		}
		fmt.Fprintf(w, "listen %s, role %s, %s, %s%s\ncheck: %s\n\n", listen, st.Role, st.Mode, st.Policy, sticky, st.Check)
		if len(st.Members) == 0 {
			fmt.Fprintf(w, "no members: no node of role %s is active (pictl node ls shows the roles)\n", st.Role)
			return nil
		}
		t := newTable(w, "NODE", "ADDRESS", "WEIGHT", "STATE", "IN FLIGHT", "REQUESTS", "ERRORS", "P50", "P99")
		for _, m := range st.Members {
			t.row(m.Node, m.Address, strconv.Itoa(m.Weight), m.State, strconv.FormatInt(m.InFlight, 10),
				strconv.FormatUint(m.Requests, 10), strconv.FormatUint(m.Errors, 10), seconds(m.P50), seconds(m.P99))
		}
		return t.flush()
	})
}

// seconds prints a latency at a readable precision, "" for none yet.
func seconds(s float64) string {
	if s <= 0 {
		return ""
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
