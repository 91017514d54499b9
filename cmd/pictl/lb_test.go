package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pictl/pictl/internal/api"
)

// pictl lb status asks the running serve's balancer; without serve it says
// so.
func TestLBStatus(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2", "--role", "web")
	e.fails("pictl serve is not running", "lb", "status")
	log := e.startServe()
	client := api.NewClient(e.socket)
	waitFor(t, "the controller's API", func() bool {
		_, err := client.Status(context.Background())
		return err == nil
	}, log)
	var st api.Balancer
	if err := json.Unmarshal([]byte(e.ok("lb", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Role != "web" || st.Policy != "least-conn" || !strings.HasSuffix(st.Listen, ":80") || st.Members == nil {
		t.Errorf("lb status -o json: %+v", st)
	}
	// pi3 has the web role but no agent has reported: not a member yet.
	table := e.ok("lb", "status")
	for _, want := range []string{"role web", "least-conn", "check: http GET / → 200 every 2s"} {
		if !strings.Contains(table, want) {
			t.Errorf("lb status lacks %q:\n%s", want, table)
		}
	}
	t.Logf("pictl lb status:\n%s", table)
	if y := e.ok("lb", "status", "-o", "yaml"); !strings.Contains(y, "role: web") {
		t.Errorf("lb status -o yaml:\n%s", y)
	}
}
