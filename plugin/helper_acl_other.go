//go:build unix && !linux

package plugin

// hasAccessACL: outside Linux, ACLs do not show in the mode bits (macOS's
// extended ACLs do not at all); not checked here.
func hasAccessACL(string) bool { return false }
