package store

import (
	"fmt"
	"os"
	"testing"
)

// Helper processes: the concurrency and crash tests re-run this test
// binary with PICTL_STORE_HELPER set; TestMain then runs the helper
// instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("PICTL_STORE_HELPER") {
	case "":
		os.Exit(m.Run())
	case "writer":
		os.Exit(runWriter())
	case "crash-before-rename":
		os.Exit(runCrasher())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv("PICTL_STORE_HELPER"))
		os.Exit(2)
	}
}
