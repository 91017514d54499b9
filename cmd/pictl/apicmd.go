package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/cluster"
)

func apiCommand() *cli.Command {
	return &cli.Command{
		Name:  "api",
		Usage: "the controller's network API and status page",
		Subcommands: []*cli.Command{
			{
				Name:  "token",
				Usage: "print the token the API's TCP port (ports.api) asks for",
				Description: `pictl serve creates the token (<state_dir>/api-token, mode 0600) when it first
starts with ports.api set. Scripts send it as a header; a browser opens the
--url link once and keeps a cookie:

   curl -H "Authorization: Bearer $(pictl api token)" http://10.99.0.1:8080/v1/nodes
   xdg-open "$(pictl api token --url)"        # the status page

To replace the token, delete the file and restart pictl serve.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "url", Usage: "print the status page's sign-in link (http://ADDR:PORT/?token=...) instead"},
				},
				Action: apiToken,
			},
		},
	}
}

func apiToken(c *cli.Context) error {
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("api token: %w", err)
	}
	path := api.TokenFile(cl.Controller.StateDir)
	tok, err := api.ReadToken(path)
	switch {
	case errors.Is(err, api.ErrNoToken) && cl.Ports.API == 0:
		return errors.New("api token: the API has no TCP port: set ports.api (e.g. 8080) in cluster.yaml and restart pictl serve; it creates the token")
	case errors.Is(err, api.ErrNoToken):
		return fmt.Errorf("api token: %s does not exist yet: pictl serve creates it when it starts with ports.api set", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("api token: cannot read %s: run this as root (or the user pictl serve runs as)", path)
	case err != nil:
		return fmt.Errorf("api token: %w", err)
	}
	if !c.Bool("url") {
		fmt.Fprintln(c.App.Writer, tok)
		return nil
	}
	u, err := signInURL(cl, tok)
	if err != nil {
		return fmt.Errorf("api token --url: %w", err)
	}
	fmt.Fprintln(c.App.Writer, u)
	return nil
}

// signInURL is the status page with the token, which the page trades for
// a cookie on the first visit.
func signInURL(cl *cluster.Cluster, token string) (string, error) {
	page := api.PageURL(cl)
	if page == "" {
		return "", errors.New("the API has no TCP port: set ports.api in cluster.yaml and restart pictl serve")
	}
	return page + "?" + url.Values{"token": {token}}.Encode(), nil
}
