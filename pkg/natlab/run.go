package natlab

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
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
