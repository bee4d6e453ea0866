// Package version holds the build version, stamped by the Makefile with
// -ldflags "-X github.com/p2pd-go/p2pd/internal/version.Version=...".
package version

// Version is the p2pd release version; "dev" for unstamped builds.
var Version = "dev"
