package proxy

import (
	"fmt"
	"os"
	"syscall"
)

// htpasswdIdentityOf identifies the file at path by its device, inode,
// change time, modification time and size: a rename changes the inode,
// and any write or utimes the change time, which user tools cannot set.
func htpasswdIdentityOf(path string) (htpasswdIdentity, error) {
	st, err := os.Stat(path)
	if err != nil {
		return htpasswdIdentity{}, fmt.Errorf("htpasswd: %w", err)
	}
	if !st.Mode().IsRegular() {
		return htpasswdIdentity{}, fmt.Errorf("htpasswd: %s is not a regular file", path)
	}
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return htpasswdIdentityByContent(path, st)
	}
	return htpasswdIdentity{
		dev: s.Dev, ino: s.Ino,
		ctime: s.Ctim.Nano(), mtime: st.ModTime().UnixNano(), size: st.Size(),
	}, nil
}
