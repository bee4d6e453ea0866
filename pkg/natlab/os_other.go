//go:build !linux

package natlab

import (
	"errors"
	"os"
)

// The lab is made of Linux network namespaces, veth pairs, tap devices and
// nftables; elsewhere the package only compiles (so packages whose tests
// use it can be vetted for every target) and New skips the test.

var errNotLinux = errors.New("natlab: needs Linux network namespaces")

func openTap(string, string) (*os.File, error) { return nil, errNotLinux }

func processAlive(int) bool { return true }

func killProcess(int) {}
