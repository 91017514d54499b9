package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pictl/pictl/internal/api"
)

// panicking and failing components end; the others and the API go on.
type brokenComponent struct {
	name  string
	panic bool
}

func (b brokenComponent) Name() string { return b.name }
func (b brokenComponent) Run(context.Context) error {
	if b.panic {
		var m map[string]int
		m["x"]++
	}
	return errors.New("socket gone")
}

// One component's failure (error or panic) leaves the others and the API
// running (issue 18: components survive each other's failures).
func TestComponentsSurviveEachOther(t *testing.T) {
	c, _, socket := newTestController(t)
	fc := &fakeComponent{ran: make(chan struct{}), reloads: make(chan int, 4)}
	c.Register(fc)
	c.Register(brokenComponent{name: "erring"})
	c.Register(brokenComponent{name: "panicking", panic: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-fc.ran
	states := func() map[string]string {
		m := map[string]string{}
		for _, comp := range c.Status(ctx).Components {
			m[comp.Name] = comp.State
		}
		return m
	}
	deadline := time.Now().Add(10 * time.Second)
	for (states()["erring"] != "failed" || states()["panicking"] != "failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := states(); s["erring"] != "failed" || s["panicking"] != "failed" || s["fake"] != "running" || s["api"] != "running" {
		t.Fatalf("component states %v", s)
	}
	select {
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	default:
	}
	if _, err := api.NewClient(socket).Status(ctx); err != nil {
		t.Fatalf("API after two components failed: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
