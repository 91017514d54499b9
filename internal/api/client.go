package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// Client talks to a running controller over its unix socket.
type Client struct {
	http *http.Client
	// slow is for requests that do real work on the controller (a reset
	// removes a whole layer), sharing http's transport.
	slow *http.Client
}

// NewClient returns a client for the controller listening on socketPath.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
	}
	return &Client{
		http: &http.Client{Transport: tr, Timeout: 5 * time.Second},
		slow: &http.Client{Transport: tr, Timeout: 5 * time.Minute},
	}
}

// NotRunningError means no controller answers on the socket; callers fall
// back to cluster.yaml alone.
type NotRunningError struct{ Err error }

func (e *NotRunningError) Error() string { return "controller not running: " + e.Err.Error() }
func (e *NotRunningError) Unwrap() error { return e.Err }

// NotRunning reports true: the behavioural test callers use with errors.As.
func (e *NotRunningError) NotRunning() bool { return true }

// IsNotRunning reports whether err says that no controller is running.
func IsNotRunning(err error) bool {
	var nr interface{ NotRunning() bool }
	return errors.As(err, &nr) && nr.NotRunning()
}

// Error is a request the controller answered with an error status. Its
// text is the controller's message, written for the person at the CLI.
type Error struct {
	Path    string
	Code    int
	Message string
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("api %s: %s", e.Path, http.StatusText(e.Code))
}

// NotFound and InUse let callers test errors by behaviour, as the server
// does with the backend's errors.
func (e *Error) NotFound() bool { return e.Code == http.StatusNotFound }
func (e *Error) InUse() bool    { return e.Code == http.StatusConflict }

func (c *Client) get(ctx context.Context, path string, v any) error {
	return c.do(ctx, c.http, http.MethodGet, path, v)
}

func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://pictl"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return &NotRunningError{Err: err}
		}
		return fmt.Errorf("api %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return &Error{Path: path, Code: resp.StatusCode, Message: e.Error}
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("api %s: decode: %w", path, err)
	}
	return nil
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.get(ctx, "/v1/status", &s)
	return s, err
}

// Nodes fetches GET /v1/nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var n []Node
	err := c.get(ctx, "/v1/nodes", &n)
	return n, err
}

// Discovered fetches GET /v1/discovered.
func (c *Client) Discovered(ctx context.Context) ([]Discovered, error) {
	var d []Discovered
	err := c.get(ctx, "/v1/discovered", &d)
	return d, err
}

// SwitchByReboot asks POST /v1/nodes/{name}/switch-by-reboot.
func (c *Client) SwitchByReboot(ctx context.Context, name string) error {
	var v map[string]string
	return c.do(ctx, c.http, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/switch-by-reboot", &v)
}

// ResetNode asks POST /v1/nodes/{name}/reset: discard the node's own layer.
func (c *Client) ResetNode(ctx context.Context, name string, force bool) (Reset, error) {
	path := "/v1/nodes/" + url.PathEscape(name) + "/reset"
	if force {
		path += "?force=1"
	}
	var r Reset
	err := c.do(ctx, c.slow, http.MethodPost, path, &r)
	return r, err
}
