package plugin

import (
	"errors"

	"golang.org/x/sys/unix"
)

// hasAccessACL reports whether name has a POSIX access ACL, whose mask its
// group permission bits then are. An error but "no such attribute" or
// "not supported" counts as one: fail closed.
func hasAccessACL(name string) bool {
	_, err := unix.Lgetxattr(name, "system.posix_acl_access", nil)
	return err == nil || !(errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP))
}
