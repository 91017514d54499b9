package store

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/pictl/pictl/internal/cluster"
)

const (
	writerProcs      = 2
	updatesPerWriter = 200 // per process: half add a node, half set its role
	writerGoroutines = 4
)

// TestConcurrentWriters runs two processes that each make 200 updates to
// the same cluster.yaml at once (from several goroutines each) and then
// checks that every single update is in the file.
func TestConcurrentWriters(t *testing.T) {
	s := newStore(t, "controller: {address: 10.99.0.1/24}\ndhcp: {range: 10.99.0.100-10.99.0.199}\nnodes: {}\n")
	var cmds []*exec.Cmd
	for p := range writerProcs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PICTL_STORE_HELPER=writer", "PICTL_STORE_PATH="+s.Path(), "PICTL_STORE_ID="+strconv.Itoa(p))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process: %v", err)
		}
	}
	c, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := writerProcs * updatesPerWriter / 2
	if len(c.Nodes) != want {
		t.Errorf("%d nodes, want %d: updates were lost", len(c.Nodes), want)
	}
	for p := range writerProcs {
		for i := range updatesPerWriter / 2 {
			name := writerNode(p, i)
			n := c.Nodes[name]
			switch {
			case n == nil:
				t.Errorf("node %s missing", name)
			case n.Role != writerRole(i):
				t.Errorf("node %s role %q, want %q", name, n.Role, writerRole(i))
			case n.PrimaryMAC().String() != writerMAC(p, i):
				t.Errorf("node %s MAC %s", name, n.PrimaryMAC())
			}
		}
	}
	assertNoTemp(t, s.Path()[:len(s.Path())-len("cluster.yaml")])
}

func writerNode(p, i int) string { return fmt.Sprintf("w%d-n%d", p, i) }
func writerMAC(p, i int) string  { return fmt.Sprintf("02:00:00:00:%02x:%02x", p, i) }
func writerRole(i int) string    { return []string{"web", "db", "lb", "router"}[i%4] }

// runWriter is the helper process: updatesPerWriter updates, spread over
// goroutines, each adding a node and then, in a separate update, giving
// it a role.
func runWriter() int {
	s := New(os.Getenv("PICTL_STORE_PATH"))
	p, _ := strconv.Atoi(os.Getenv("PICTL_STORE_ID"))
	var wg sync.WaitGroup
	errs := make(chan error, updatesPerWriter)
	for g := range writerGoroutines {
		wg.Go(func() {
			for i := g; i < updatesPerWriter/2; i += writerGoroutines {
				name := writerNode(p, i)
				_, err := s.Update(func(d *cluster.Document) error {
					return d.Set(map[string]any{"mac": writerMAC(p, i)}, "nodes", name)
				})
				if err != nil {
					errs <- fmt.Errorf("add %s: %w", name, err)
					return
				}
				_, err = s.Update(func(d *cluster.Document) error {
					if _, ok := d.Get("nodes", name); !ok {
						return fmt.Errorf("node %s vanished", name)
					}
					return d.Set(writerRole(i), "nodes", name, "role")
				})
				if err != nil {
					errs <- fmt.Errorf("role %s: %w", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintln(os.Stderr, "writer", p, err)
		return 1
	}
	return 0
}
