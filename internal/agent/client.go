package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is the agent's side of the listener's protocol.
type Client struct {
	URL   string // http://CONTROLLER:PORT
	Node  string
	Token string
	HTTP  *http.Client // default: no overall timeout, the context bounds each call
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) path(what string) string {
	return strings.TrimRight(c.URL, "/") + "/v1/agent/" + url.PathEscape(c.Node) + "/" + what
}

// Desired long-polls: it returns at once when the desired layer differs
// from after (or after is ""), else when it changes or wait has passed.
func (c *Client) Desired(ctx context.Context, after string, wait time.Duration) (Desired, error) {
	u := c.path("desired") + "?after=" + url.QueryEscape(after) + "&wait=" + wait.String()
	ctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Desired{}, err
	}
	var d Desired
	err = c.do(req, &d)
	return d, err
}

// Report sends a report.
func (c *Client) Report(ctx context.Context, r Report) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.path("report"), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, nil)
}

func (c *Client) do(req *http.Request, v any) error {
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("controller %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("controller %s: %s: %s", c.URL, resp.Status, e.Error)
	}
	if v == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("controller %s: %w", c.URL, err)
	}
	return nil
}
