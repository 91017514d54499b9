//go:build !linux

package tftpd

import "os"

// Network namespaces are Linux-only; elsewhere requests are served from the
// calling thread.

func currentNetns() (*os.File, error) { return nil, nil }

func runInNetns(_ *os.File, fn func() error) error { return fn() }
