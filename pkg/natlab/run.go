package natlab

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// run executes a command and returns a useful error with its output.
func run(name string, args ...string) error {
	_, err := output(nil, name, args...)
	return err
}

// output executes a command with optional stdin and returns its stdout.
func output(stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("natlab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// inNS runs a command inside namespace ns.
func inNS(ns string, stdin []byte, name string, args ...string) (string, error) {
	return output(stdin, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// waitUp waits until dev in ns has carrier (LOWER_UP): a veth is usable only
// once both ends are up, which can lag under load.
func waitUp(ns, dev string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := output(nil, "ip", "-n", ns, "-o", "link", "show", "dev", dev)
		if err == nil && strings.Contains(out, "LOWER_UP") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natlab: %s in %s did not come up: %s %v", dev, ns, strings.TrimSpace(out), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
