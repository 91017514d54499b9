// Package hardening holds the regression tests of issue 18: each reproduces
// an attack from the boot network (or a careless admin's mistake) against a
// real server and checks the server stays alive, within its limits, and
// keeps serving a real client during and after.
package hardening
