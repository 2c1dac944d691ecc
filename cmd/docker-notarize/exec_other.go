//go:build notarize_verifyonly && !unix

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// execFullCLI runs the full CLI at path with the same arguments,
// environment and streams, and exits with its exit code: without exec(2),
// the closest to running in place of this process. It returns only when the
// full CLI could not be started.
func execFullCLI(path string) error {
	cmd := exec.Command(path, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", path, err)
	}
	os.Exit(0)
	return nil
}
