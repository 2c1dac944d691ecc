package testutil

import (
	"errors"
	"fmt"
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
