package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// ModuleRoot returns the directory of the module's go.mod, the nearest one
// above the working directory (a test's is its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Script returns the path of the project's scripts/NAME, the script that
// installs or starts what a test needs (MariaDB, omniwitness, versitygw).
func Script(name string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("scripts/%s: %w", name, err)
	}
	p := filepath.Join(root, "scripts", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("scripts/%s: %w", name, err)
	}
	return p, nil
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago, for a
// server a script starts. Another process may take it first: the caller
// tries again on another when the start fails.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
