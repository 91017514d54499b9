package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// pageForwarder makes the controller's status page, which listens inside
// the demo's namespace, reachable from a browser on this machine: it
// accepts on 127.0.0.1 only and dials the page from a thread that has
// entered the namespace, so nothing but loopback is opened on the host.
type pageForwarder struct {
	ln     net.Listener
	netns  string
	target string
	wg     sync.WaitGroup
}

func forwardPage(netns, target string) (*pageForwarder, error) {
	return forward(netns, target, "127.0.0.1:8080")
}

// forward makes target in the namespace reachable on this machine's
// loopback, on preferred if it is free.
func forward(netns, target, preferred string) (*pageForwarder, error) {
	var ln net.Listener
	var err error
	// A fixed port is easier to type; any free one if it is taken.
	for _, addr := range []string{preferred, "127.0.0.1:0"} {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("forwarder to %s: %w", target, err)
	}
	f := &pageForwarder{ln: ln, netns: netns, target: target}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *pageForwarder) URL() string { return "http://" + f.ln.Addr().String() + "/" }

func (f *pageForwarder) Close() {
	f.ln.Close()
	f.wg.Wait()
}

func (f *pageForwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.pipe(c)
	}
}

func (f *pageForwarder) pipe(c net.Conn) {
	defer c.Close()
	up, err := f.dial()
	if err != nil {
		fmt.Fprintf(os.Stderr, "forwarder to %s: %v\n", f.target, err)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

// dial connects from inside the namespace. The socket keeps the namespace
// it was made in, so the thread can go back right after.
func (f *pageForwarder) dial() (net.Conn, error) {
	ns, err := os.Open("/run/netns/" + f.netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	runtime.LockOSThread()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter namespace %s: %w", f.netns, err)
	}
	c, dialErr := (&net.Dialer{}).DialContext(context.Background(), "tcp", f.target)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and ends with its goroutine: it must
		// not run anything else in the wrong namespace.
		return c, dialErr
	}
	runtime.UnlockOSThread()
	return c, dialErr
}
