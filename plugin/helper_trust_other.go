//go:build !unix

package plugin

import "path/filepath"

// checkHelperTrust has no owner or mode bits to check outside Unix: the
// directory's ACL decides (checkHelper). It returns p, symlinks resolved.
func checkHelperTrust(p, _ string) (string, error) { return filepath.EvalSymlinks(p) }
