package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBackend is a hand-written Backend: fixed rows, and a reset that
// fails as told.
type fakeBackend struct {
	status     Status
	nodes      []Node
	discovered []Discovered
	resetErr   error
	resets     []string // "name force"
}

func (f *fakeBackend) Status(context.Context) Status                    { return f.status }
func (f *fakeBackend) Nodes(context.Context) ([]Node, error)            { return f.nodes, nil }
func (f *fakeBackend) Discovered(context.Context) ([]Discovered, error) { return f.discovered, nil }
func (f *fakeBackend) SwitchByReboot(context.Context, string) error     { return nil }

func (f *fakeBackend) ResetNode(_ context.Context, name string, force bool) error {
	if f.resetErr != nil {
		return f.resetErr
	}
	f.resets = append(f.resets, name+map[bool]string{true: " force", false: ""}[force])
	return nil
}

type notFound struct{ msg string }

func (e notFound) Error() string  { return e.msg }
func (e notFound) NotFound() bool { return true }

type inUse struct{ msg string }

func (e inUse) Error() string { return e.msg }
func (e inUse) InUse() bool   { return true }

// startServer serves b on a unix socket in a temp dir until the test ends.
func startServer(t *testing.T, b Backend) (*Server, *Client) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "api.sock")
	srv := NewServer(socket, b, nil)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("api server did not stop")
		}
	})
	return srv, NewClient(socket)
}

func TestResetNode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		node      string
		force     bool
		backend   error
		wantCode  int // 0 = success
		wantErr   string
		wantReset string
	}{
		{name: "ok", node: "pi3", wantReset: "pi3"},
		{name: "force", node: "pi3", force: true, wantReset: "pi3 force"},
		{name: "unknown", node: "pi9", backend: notFound{"no node named pi9 (see pictl node ls)"},
			wantCode: http.StatusNotFound, wantErr: "no node named pi9 (see pictl node ls)"},
		{name: "in use", node: "pi3", backend: inUse{"node pi3 is mounted from 10.0.0.13; stop it or use --force"},
			wantCode: http.StatusConflict, wantErr: "node pi3 is mounted from 10.0.0.13; stop it or use --force"},
		{name: "other", node: "pi3", backend: errors.New("disk on fire"),
			wantCode: http.StatusInternalServerError, wantErr: "disk on fire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{resetErr: tc.backend}
			_, client := startServer(t, fb)
			res, err := client.ResetNode(context.Background(), tc.node, tc.force)
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if res.Node != tc.node || res.Forced != tc.force {
					t.Errorf("answer %+v", res)
				}
				if len(fb.resets) != 1 || fb.resets[0] != tc.wantReset {
					t.Errorf("backend saw %q, want %q", fb.resets, tc.wantReset)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Code != tc.wantCode {
				t.Fatalf("error %v (%T), want status %d", err, err, tc.wantCode)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error text %q, want %q", err, tc.wantErr)
			}
			if ae.NotFound() != (tc.wantCode == http.StatusNotFound) || ae.InUse() != (tc.wantCode == http.StatusConflict) {
				t.Errorf("behaviour of %v: NotFound %v InUse %v", ae, ae.NotFound(), ae.InUse())
			}
		})
	}
}

// The reset is a POST with an explicit force flag: a GET must not reset,
// and a force value that is neither on nor off is refused, not guessed.
func TestResetNodeRequests(t *testing.T) {
	fb := &fakeBackend{}
	srv, _ := startServer(t, fb)
	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/v1/nodes/pi3/reset", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/nodes/pi3/reset?force=maybe", http.StatusBadRequest},
		{http.MethodPost, "/v1/nodes/pi3/reset?force=0", http.StatusOK},
		{http.MethodPost, "/v1/nodes/pi3/reset?force", http.StatusOK},
	} {
		code := do(t, srv, tc.method, tc.target)
		if code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.target, code, tc.want)
		}
	}
	if strings.Join(fb.resets, ",") != "pi3,pi3 force" {
		t.Errorf("resets: %q", fb.resets)
	}
}

// do sends one request straight to the unix socket's handler.
func do(t *testing.T, srv *Server, method, target string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.mux.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code
}

// api_socket pointing at an existing file (cluster.yaml, say) is refused
// with a one-line error and the file is left alone (issue 18 row 6).
func TestListenRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	for name, make := range map[string]func(string) error{
		"file": func(p string) error { return os.WriteFile(p, []byte("settings: {}\n"), 0o644) },
		"dir":  func(p string) error { return os.Mkdir(p, 0o755) },
		"link": func(p string) error { return os.Symlink("/etc/hostname", p) },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := make(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(path)
			srv := NewServer(path, &fakeBackend{}, nil)
			err := srv.Listen()
			if err == nil || !strings.Contains(err.Error(), "is not a socket") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Listen: %v", err)
			}
			srv.Close()
			after, err := os.Lstat(path)
			if err != nil || after.Mode() != before.Mode() || after.ModTime() != before.ModTime() {
				t.Fatalf("%s changed: %v", path, err)
			}
		})
	}
}
