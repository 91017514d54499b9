package cluster

import (
	"reflect"
	"testing"
)

// FuzzLoad: no input makes the loader panic, and every file it accepts
// survives a round trip through Document unchanged in meaning, also after
// an edit. The seed corpus (testdata/fuzz/FuzzLoad) holds the validation
// and round-trip test files, so a plain go test replays them.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("controller: {address: 10.99.0.1/24}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load("cluster.yaml", data)
		d, derr := ParseDocument("cluster.yaml", data)
		if err == nil && derr != nil {
			t.Fatalf("Load accepts what ParseDocument rejects: %v", derr)
		}
		if derr != nil {
			return
		}
		out, err2 := d.Bytes()
		if err2 != nil {
			t.Fatalf("parsed file cannot be encoded: %v\n--- in:\n%q", err2, data)
		}
		if _, err := ParseDocument("cluster.yaml", out); err != nil {
			t.Fatalf("encoded file does not parse: %v\n--- in:\n%q\n--- out:\n%q", err, data, out)
		}
		if err == nil {
			c2, err := Load("cluster.yaml", out)
			if err != nil {
				t.Fatalf("valid file invalid after a round trip: %v\n--- in:\n%s\n--- out:\n%s", err, data, out)
			}
			if !reflect.DeepEqual(c, c2) {
				t.Fatalf("round trip changed the cluster\n--- in:\n%s\n--- out:\n%s", data, out)
			}
		}
		// An edit of any parseable file must not panic, and a valid file
		// stays valid when a node gets a role.
		if err := d.Set("web", "nodes", "fuzz-node", "role"); err != nil {
			return
		}
		if err := d.Set("02:00:00:00:00:01", "nodes", "fuzz-node", "mac"); err != nil {
			return
		}
		out, err2 = d.Bytes()
		if err2 != nil {
			t.Fatalf("edited document cannot be encoded: %v", err2)
		}
		if _, err := ParseDocument("cluster.yaml", out); err != nil {
			t.Fatalf("edited document does not parse: %v\n--- in:\n%s\n--- out:\n%s", err, data, out)
		}
	})
}
