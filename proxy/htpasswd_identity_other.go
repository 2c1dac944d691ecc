//go:build !linux

package proxy

import (
	"fmt"
	"os"
)

// htpasswdIdentityOf identifies the file at path by its content (its
// SHA-256), modification time and size: the change time is not read
// portably outside Linux.
func htpasswdIdentityOf(path string) (htpasswdIdentity, error) {
	st, err := os.Stat(path)
	if err != nil {
		return htpasswdIdentity{}, fmt.Errorf("htpasswd: %w", err)
	}
	if !st.Mode().IsRegular() {
		return htpasswdIdentity{}, fmt.Errorf("htpasswd: %s is not a regular file", path)
	}
	return htpasswdIdentityByContent(path, st)
}
