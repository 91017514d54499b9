package roles

import (
	"os/exec"
	"slices"
	"testing"
)

func TestSplitList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"10.1.0.0/16 via 10.99.0.254", []string{"10.1.0.0/16 via 10.99.0.254"}},
		{"a, b ,,c", []string{"a", "b", "c"}},
	} {
		if got := splitList(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// shquote's words come back out of a real sh unchanged.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"", "eth0", "it's", `a"b$c\d`, "x; rm -rf /", "' '"} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh read %s as %q (%v), want %q", shellQuote(s), out, err, s)
		}
	}
}

// Rank and Members read the node list by role, sorted by name; Members
// skips nodes without an address and carries the role's offer.
func TestRankAndMembers(t *testing.T) {
	d := templateData{
		Node: templateNode{Node{Name: "lb2"}},
		Nodes: []Node{
			{Name: "lb1", Role: "lb"}, {Name: "lb2", Role: "lb"},
			{Name: "w1", Role: "web", Addr: sampleNodes()[0].Addr}, {Name: "w2", Role: "web"},
		},
		offers: map[string]Offer{"web": {Port: 8000}},
	}
	if r := d.Rank("lb"); r != 1 {
		t.Errorf("Rank(lb) = %d, want 1", r)
	}
	if r := d.Rank("web"); r != -1 {
		t.Errorf("Rank(web) = %d, want -1", r)
	}
	m := d.Members("web")
	if len(m) != 1 || m[0].Name != "w1" || m[0].Port != 8000 {
		t.Errorf("Members(web) = %+v", m)
	}
}
