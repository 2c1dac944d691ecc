//go:build notarize_verifyonly && unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// execFullCLI replaces this process with the full CLI at path: same process
// (the docker CLI's plugin socket and signals reach the command that runs),
// same arguments, environment and streams. It returns only on failure.
func execFullCLI(path string) error {
	if err := syscall.Exec(path, os.Args, os.Environ()); err != nil {
		return fmt.Errorf("run %s: %w", path, err)
	}
	return nil
}
