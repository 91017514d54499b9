package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pictl/pictl/internal/api"
)

func TestMergeRuntime(t *testing.T) {
	file := []api.Node{
		{Name: "n1", MACs: []string{"02:00:00:00:00:01"}},
		{Name: "n2", MACs: []string{"02:00:00:00:00:22"}}, // MAC changed in the file
		{Name: "n3", MACs: []string{"02:00:00:00:00:03"}}, // added, not reloaded yet
	}
	live := []api.Node{
		{Name: "n1", MACs: []string{"02:00:00:00:00:01"}, Runtime: &api.NodeRuntime{LeaseIP: "10.99.0.11"}},
		{Name: "n2", MACs: []string{"02:00:00:00:00:02"}, Runtime: &api.NodeRuntime{LeaseIP: "10.99.0.12"}},
		{Name: "gone", MACs: []string{"02:00:00:00:00:09"}, Runtime: &api.NodeRuntime{LeaseIP: "10.99.0.19"}},
	}
	got := mergeRuntime(file, live)
	if len(got) != 3 {
		t.Fatalf("%d rows, want the file's 3", len(got))
	}
	want := map[string]string{"n1": "10.99.0.11", "n2": "", "n3": ""}
	for _, n := range got {
		if n.Runtime == nil || n.Runtime.LeaseIP != want[n.Name] {
			t.Errorf("%s: runtime %+v, want lease %q", n.Name, n.Runtime, want[n.Name])
		}
	}
}

// Issue 18 row 7: with serve running, `node add` then `node ls` at once
// lists the new node, and `node rm` then `node ls` no longer lists it,
// whether or not the controller has reloaded.
func TestNodeListAfterChangeWhileServing(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2")
	log := e.startServe()
	waitFor(t, "the controller's API", func() bool {
		_, err := api.NewClient(e.socket).Status(context.Background())
		return err == nil
	}, log)
	names := func() []string {
		var rows []api.Node
		if err := json.Unmarshal([]byte(e.ok("node", "ls", "-o", "json")), &rows); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			if r.Runtime == nil {
				t.Errorf("%s: no runtime facts with the controller running", r.Name)
			}
			out = append(out, r.Name)
		}
		return out
	}
	for i := 0; i < 5; i++ {
		e.ok("node", "add", "n3", "--mac", "02:00:00:00:00:03")
		if got := names(); len(got) != 2 || got[0] != "n3" || got[1] != "pi3" {
			t.Fatalf("round %d: node ls right after node add: %v", i, got)
		}
		e.ok("node", "rm", "n3")
		if got := names(); len(got) != 1 || got[0] != "pi3" {
			t.Fatalf("round %d: node ls right after node rm: %v", i, got)
		}
	}
}

// `pictl node clear-quarantine` reaches the controller's DHCP server.
func TestNodeClearQuarantine(t *testing.T) {
	e := newEnv(t)
	e.init()
	e.ok("node", "add", "pi3", "--mac", "dc:a6:32:01:36:c2", "--ip", "10.99.0.13")
	e.ok("node", "add", "pi4", "--mac", "dc:a6:32:01:36:c4")
	log := e.startServe()
	waitFor(t, "the controller's API", func() bool {
		_, err := api.NewClient(e.socket).Status(context.Background())
		return err == nil
	}, log)
	if out := e.ok("node", "clear-quarantine", "pi3"); !strings.Contains(out, "10.99.0.13 was not quarantined") {
		t.Errorf("pi3: %q", out)
	}
	if out := e.ok("node", "clear-quarantine", "10.99.0.150"); !strings.Contains(out, "10.99.0.150 was not quarantined") {
		t.Errorf("address: %q", out)
	}
	e.fails("no reserved address", "node", "clear-quarantine", "pi4")
	e.fails("no node", "node", "clear-quarantine", "nosuch")
}
