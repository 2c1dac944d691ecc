package ledgerclient

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSafeName(t *testing.T) {
	names := map[string]string{}
	for _, origin := range []string{
		"example.test/notarize-ledger", "example.test_notarize-ledger", "../../etc/passwd", "..", ".hidden",
		"a b", strings.Repeat("long/", 100), "ünïcode/log",
	} {
		n := safeName(origin)
		if strings.ContainsAny(n, "/\\ ") || strings.HasPrefix(n, ".") || len(n) > 100 {
			t.Errorf("safeName(%q) = %q", origin, n)
		}
		if prev, ok := names[n]; ok {
			t.Errorf("safeName(%q) = safeName(%q) = %q", origin, prev, n)
		}
		names[n] = origin
	}
}

// TestLockPath: the state lock excludes other goroutines of the same
// client (its own lock, woken at once on release) and other clients of the
// same home (flock(2), as other processes); a cancelled wait gives up.
func TestLockPath(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, "x", "lock")
	for _, tc := range []struct {
		name  string
		other *store // the one that waits
	}{{"same client", nil}, {"another client (process)", newStore(home)}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(home)
			waiter := tc.other
			if waiter == nil {
				waiter = s
			}
			unlock, err := s.lockPath(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			if _, err := waiter.lockPath(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second lock while held: %v", err)
			}
			got := make(chan error, 1)
			go func() {
				u, err := waiter.lockPath(t.Context(), path)
				if err == nil {
					u()
				}
				got <- err
			}()
			time.Sleep(20 * time.Millisecond)
			unlock()
			if err := <-got; err != nil {
				t.Fatalf("lock after release: %v", err)
			}
		})
	}
}

func TestSetPin(t *testing.T) {
	s := newStore(t.TempDir())
	if _, ok, err := s.pin("https://a"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	if k, err := s.setPin(t.Context(), "https://a", "key1"); err != nil || k != "key1" {
		t.Fatalf("setPin: %q %v", k, err)
	}
	if k, err := s.setPin(t.Context(), "https://a", "key2"); err != nil || k != "key1" {
		t.Fatalf("second setPin must keep the first pin: %q %v", k, err)
	}
	if k, err := s.setPin(t.Context(), "https://b", "key3"); err != nil || k != "key3" {
		t.Fatalf("setPin b: %q %v", k, err)
	}
	if k, ok, err := s.pin("https://a"); !ok || err != nil || k != "key1" {
		t.Fatalf("pin a: %q %v %v", k, ok, err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, pinsFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.pin("https://a"); err == nil {
		t.Fatal("corrupt pins file: no error")
	}
}

func TestCorruptStateIsNotReset(t *testing.T) {
	_, c, home := pinnedClient(t, 3)
	path := newStore(home).checkpointPath(c.VerifierKey())
	for _, content := range []string{"garbage", "", strings.Repeat("x", MaxCheckpointSize+1)} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Latest(t.Context()); err == nil {
			t.Fatalf("state %.20q: no error", content)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Fatal("corrupt state was overwritten")
		}
	}
}
