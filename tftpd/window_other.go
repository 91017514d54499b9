//go:build !linux

package tftpd

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/net/bpf"
)

// canSteer: without the reuseport program every client is served lock-step.
const canSteer = false

var errNoSteering = errors.New("windowed sending needs Linux (SO_ATTACH_REUSEPORT_CBPF)")

func reusePort(_, _ string, _ syscall.RawConn) error { return errNoSteering }

func attachSteering(*net.UDPConn, []bpf.RawInstruction) error { return errNoSteering }
