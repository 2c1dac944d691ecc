package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Red team 6: the refused-login budget is per IPv4 address or IPv6 /64,
// and every uncached login waits for one of GOMAXPROCS/2 bcrypt slots, at
// most bcryptWaitMax. An attacker holding an ordinary IPv6 /56 (256 /64s,
// a home connection) or a few dozen IPv4 addresses spends each address's
// burst of wrong passwords at once: the slots stay busy, and an honest
// user whose credentials are not cached (a new login, or any user a minute
// after its last verification: credentialCacheTTL) waits bcryptWaitMax and
// is refused 429. The test fails when alice's correct password is refused
// during a flood from 8 addresses.
func TestRedteam6LoginFloodFromOneDelegation(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for bcryptWaitMax")
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	h, err := bcrypt.GenerateFromPassword([]byte("pw-a"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("alice:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ac, err := AuthConfig{Htpasswd: &HtpasswdAuth{Path: path}}.accessController()
	if err != nil {
		t.Fatal(err)
	}
	cache := ac.(*credentialCache)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 { // 8 IPv4 addresses (one IPv6 /56 does it too: [2001:db8:0:42XX::1])
		for j := range failedLoginBurst {
			wg.Go(func() { // each address keeps its budget queued: a wait that times out costs it nothing
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
					r.RemoteAddr = fmt.Sprintf("203.0.113.%d:%d", 10+i, 40000+j)
					r.SetBasicAuth("alice", fmt.Sprintf("guess-%d-%d-%d", i, j, n))
					if _, err := cache.Authorized(r); err != nil {
						var le *loginRateError
						if errors.As(err, &le) && !le.busy {
							time.Sleep(le.retryAfter)
						}
					}
				}
			})
		}
	}
	time.Sleep(3 * time.Second) // the guesses are queued for the slots, continuously
	r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
	r.RemoteAddr = "198.51.100.20:5000"
	r.SetBasicAuth("alice", "pw-a")
	start := time.Now()
	_, err = cache.Authorized(r)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	var le *loginRateError
	t.Logf("alice's login during the flood: %v after %v", err, took.Round(time.Millisecond))
	if errors.As(err, &le) {
		t.Errorf("DoS: during wrong-password guesses from 8 addresses, alice's correct password was refused after %v: %v", took.Round(time.Millisecond), err)
	}
}
