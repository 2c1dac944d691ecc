//go:build linux

package proxy

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestHtpasswdReplacedByFIFOFailsClosed: an htpasswd replaced by a FIFO
// (an operator mistake, or anyone who may write its directory) is refused
// at once, without opening it: distribution's reload blocked in its open
// under the cache's lock, and every authenticated request hung behind it
// (red team 8, F3).
func TestHtpasswdReplacedByFIFOFailsClosed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, rt8Line(t, "bob", "pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	ac := rt8Controller(t, path)
	if !rt8Try(ac, "pw") || !rt8Try(ac, "pw") {
		t.Fatal("pw refused before the change")
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // unblock a reader stuck in open, if any
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = f.Close()
		}
	})
	got := make(chan bool, 1)
	go func() { got <- rt8Try(ac, "pw") }()
	select {
	case ok := <-got:
		if ok {
			t.Fatal("BYPASS: a remembered password is accepted with the htpasswd replaced by a FIFO")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DoS: an authenticated request hangs with the htpasswd replaced by a FIFO")
	}
}
