package plugin

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A group-writable full CLI whose group is private, but with an ACL that
// lets another user write it: its group bits are the ACL's mask.
func TestHelperGroupWritableByACL(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set an ACL")
	}
	front, full := installPair(t, t.TempDir(), 0o755)
	// user::rwx user:4242:rwx group::r-x mask::rwx other::r-x
	acl := []byte{2, 0, 0, 0}
	for _, e := range [][3]uint32{{0x01, 7, ^uint32(0)}, {0x02, 7, 4242}, {0x04, 5, ^uint32(0)}, {0x10, 7, ^uint32(0)}, {0x20, 5, ^uint32(0)}} {
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[0]))
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[1]))
		acl = binary.LittleEndian.AppendUint32(acl, e[2])
	}
	if err := syscall.Setxattr(full, "system.posix_acl_access", acl, 0); err != nil {
		t.Skipf("no POSIX ACLs here: %v", err)
	}
	useAccounts(t, "root:x:0:0::/root:/bin/sh\n", "root:x:0:\n", "passwd: files\ngroup: files\n")
	if got, err := fullNextTo(front); err == nil {
		t.Fatalf("fullNextTo = %q: uid 4242 may write it (ACL)", got)
	} else {
		t.Log(err)
	}
}

// hasAccessACL fails closed: an error other than "no such attribute" or
// "not supported" (here ENOENT) counts as an ACL (a review: reading only
// err == nil passed every test).
func TestHasAccessACLFailsClosed(t *testing.T) {
	if !hasAccessACL(filepath.Join(t.TempDir(), "missing")) {
		t.Error("hasAccessACL(missing) = false: an unreadable ACL read as none")
	}
	if hasAccessACL(t.TempDir()) {
		t.Error("hasAccessACL(a fresh directory) = true")
	}
}
