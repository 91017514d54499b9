package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pictl/pictl/internal/api"
	"github.com/pictl/pictl/internal/testcache"
	"github.com/pictl/pictl/test/e2e"
	"github.com/pictl/pictl/test/vm"
)

// The web part of the demo: the nodes boot Debian (systemd) with nginx,
// take the web role, and pictl's balancer fronts them.

// wwwPage is the shared www volume's page the web role serves.
const wwwPage = "hello from pictl's web role, through pictl's balancer\n"

// webImageCache is the Debian image with nginx-light installed, kept after
// the first demo so later ones skip apt. Its name carries the debootstrap
// tree's, so a new base rebuilds it.
func webImageCache() string {
	base := strings.TrimSuffix(testcache.DebianTarName(), ".tar")
	return filepath.Join(testcache.Dir("demo", "PICTL_DEMO_CACHE"), base+"+nginx-light.tar")
}

// importWebImage imports the demo's image: Debian (systemd) with nginx,
// the harness's kernel and initramfs in /boot. The first run makes it from
// the cached debootstrap tree and installs nginx-light with `pictl image
// exec`, as a person would; it then caches the result.
func importWebImage(ctx context.Context, ctl *e2e.Controller, art *vm.Artifacts, work string) error {
	src := filepath.Join(work, "debian-image")
	cached := webImageCache()
	if _, err := os.Stat(cached); err == nil {
		say("      Debian (systemd) with nginx-light, from the cache %s", cached)
		if err := e2e.DebianImageSource(ctx, src, cached, art); err != nil {
			return err
		}
		return importImage(ctx, ctl, src)
	}
	say("      First run: making a Debian (systemd) image and installing nginx-light into it")
	say("      with `pictl image exec` (a few minutes; cached in %s for the next runs)", cached)
	debTar, err := e2e.EnsureDebianTar(ctx, func(f string, a ...any) { say("      "+f, a...) })
	if err != nil {
		return fmt.Errorf("Debian tree: %w", err)
	}
	if err := e2e.DebianImageSource(ctx, src, debTar, art); err != nil {
		return err
	}
	if err := importImage(ctx, ctl, src); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"apt-get", "update", "-q"},
		{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx-light"},
		{"apt-get", "clean"},
	} {
		say("      $ pictl image exec %s -- %s", imageName, strings.Join(args, " "))
		if _, err := ctl.Run(ctx, append([]string{"image", "exec", imageName, "--"}, args...)...); err != nil {
			return err
		}
	}
	root := filepath.Join(ctl.StateDir, "images", imageName, "root")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		return err
	}
	tmp := cached + ".tmp"
	cmd := exec.CommandContext(ctx, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", root, "-cpf", tmp, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("caching the image: %w\n%s", err, out)
	}
	return os.Rename(tmp, cached)
}

func importImage(ctx context.Context, ctl *e2e.Controller, src string) error {
	say("      $ pictl image import %s <Debian root with kernel + initramfs in /boot>", imageName)
	out, err := ctl.Run(ctx, "image", "import", imageName, src)
	if err != nil {
		return err
	}
	say("%s", indent(out, "      "))
	return nil
}

// writeWWW puts the page into the shared www volume the web role serves.
func writeWWW(ctl *e2e.Controller) error {
	www := filepath.Join(ctl.StateDir, "volumes", "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(www, "index.html"), []byte(wwwPage), 0o644)
}

// waitWeb waits until every machine's agent reports the web role active
// and the balancer has them all up, printing each as it comes.
func waitWeb(ctx context.Context, ctl *e2e.Controller, budget time.Duration) error {
	client := api.NewClient(ctl.Socket)
	start := time.Now()
	deadline := time.Now().Add(budget)
	seen := map[string]string{}
	for {
		up := 0
		if b, err := client.Balancer(ctx); err == nil {
			for _, m := range b.Members {
				if m.State != seen[m.Node] {
					seen[m.Node] = m.State
					say("      %-6s %6.1fs  balancer member %s (%s)", m.Node, time.Since(start).Seconds(), m.State, m.Address)
				}
				if m.State == "up" {
					up++
				}
			}
		}
		if up == len(machines) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the web role did not come up on every machine within %v (pictl node ls and pictl lb status tell why)", budget)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// fetchThroughBalancer GETs the page through the balancer from inside the
// namespace, as a client on the boot network would, n times.
func fetchThroughBalancer(ctx context.Context, n int) (string, error) {
	url := "http://" + net.JoinHostPort(strings.Split(hostAddr, "/")[0], "80") + "/"
	var first string
	for i := 0; i < n; i++ {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", netnsName, "curl", "-fsS", "--max-time", "5", url).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("GET %s through the balancer: %w: %s", url, err, out)
		}
		if i == 0 {
			first = string(out)
		}
	}
	return first, nil
}

// showBalancer fetches the page through the balancer, shows the members'
// counters and forwards the balancer to this machine's loopback for a
// browser.
func showBalancer(ctx context.Context, ctl *e2e.Controller) (*pageForwarder, error) {
	const gets = 20
	page, err := fetchThroughBalancer(ctx, gets)
	if err != nil {
		return nil, err
	}
	say("$ ip netns exec %s curl http://10.99.0.1/      # %d times, through pictl's balancer on ports.balancer", netnsName, gets)
	say("%s", indent(page, "  "))
	say("$ pictl lb status\n%s", indent(mustRun(ctx, ctl, "lb", "status"), "  "))
	if b, err := api.NewClient(ctl.Socket).Balancer(ctx); err == nil {
		var total uint64
		for _, m := range b.Members {
			total += m.Requests
		}
		if total < gets {
			return nil, fmt.Errorf("the balancer counted %d requests for %d GETs", total, gets)
		}
	}
	fw, err := forward(netnsName, net.JoinHostPort(strings.Split(hostAddr, "/")[0], "80"), "127.0.0.1:8081")
	if err != nil {
		return nil, err
	}
	// As a browser on this machine will: through the forwarder.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fw.URL())
	if err != nil {
		fw.Close()
		return nil, fmt.Errorf("the balancer from this machine: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != wwwPage {
		fw.Close()
		return nil, fmt.Errorf("the balancer from this machine: %s %q", resp.Status, body)
	}
	say("$ curl %s      # the balancer, forwarded from 10.99.0.1:80 in the namespace\n  %s, %q", fw.URL(), resp.Status, strings.TrimSpace(string(body)))
	return fw, nil
}
