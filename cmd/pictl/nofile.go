package main

import (
	"fmt"
	"log/slog"
	"syscall"
)

// lowNOFILE is the descriptor limit below which serve warns: every NFS and
// API connection, TFTP transfer and open layer file takes one.
const lowNOFILE = 8192

// raiseNOFILE sets the soft RLIMIT_NOFILE to the hard limit (Go's runtime
// does the same silently since 1.19, but only for the process that imports
// os first; saying it here makes the limit visible in the log) and reports
// the limit in force.
func raiseNOFILE(log *slog.Logger) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-files limit: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return lim.Cur, fmt.Errorf("raise the open-files limit from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = raised
	}
	if lim.Cur < lowNOFILE {
		log.Warn("the open-files limit is low; raise LimitNOFILE (systemd) or ulimit -Hn", "limit", lim.Cur, "want_at_least", lowNOFILE)
	} else {
		log.Debug("open-files limit", "limit", lim.Cur)
	}
	return lim.Cur, nil
}
