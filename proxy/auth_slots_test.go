package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fullSlots returns login slots whose every slot is taken.
func fullSlots(t *testing.T) *loginSlots {
	t.Helper()
	s := newLoginSlots(1, time.Now)
	if err := s.acquire(t.Context(), loginNames("192.0.2.250:1")); err != nil {
		t.Fatal(err)
	}
	return s
}

// queueLogin starts a login from addr waiting for a slot of s and returns
// where its outcome arrives, once it waits.
func queueLogin(t *testing.T, s *loginSlots, addr string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	client := loginNames(addr)[0].Key
	queued := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queued[client]
	}
	before := queued()
	go func() {
		done <- s.acquire(t.Context(), loginNames(addr))
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if queued() > before {
			return done
		}
		select {
		case err := <-done:
			done <- err
			return done
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the login never waited")
		}
	}
}

// busyRefusal reports whether err is a 429 for a full queue.
func busyRefusal(err error) bool {
	var le *loginRateError
	return errors.As(err, &le) && le.busy
}

// TestLoginQueuePerClient: one client queues at most maxQueuedLogins
// logins for a slot (the next is 429 at once) while another client still
// queues; the /64s of one IPv6 /56 queue at most login56Scale times as
// many together.
func TestLoginQueuePerClient(t *testing.T) {
	s := fullSlots(t)
	for range maxQueuedLogins {
		queueLogin(t, s, "203.0.113.10:1")
	}
	if err := <-queueLogin(t, s, "203.0.113.10:2"); !busyRefusal(err) {
		t.Fatalf("login %d queued by one address: %v, want 429 at once", maxQueuedLogins+1, err)
	}
	queueLogin(t, s, "203.0.113.11:1")
	for i := range maxQueuedLogins * login56Scale {
		queueLogin(t, s, fmt.Sprintf("[2001:db8:0:42%02x::1]:1", i))
	}
	if err := <-queueLogin(t, s, "[2001:db8:0:42ff::1]:1"); !busyRefusal(err) {
		t.Fatalf("a fresh /64 of a /56 with %d logins queued: %v, want 429 at once", maxQueuedLogins*login56Scale, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.waiting { // let the waiters go
		w.granted = true
		close(w.done)
	}
	s.waiting = nil
}

// TestLoginSlotToCleanClient: a freed slot goes to the waiting login of a
// client with no refused login, before the older logins of clients whose
// logins were refused.
func TestLoginSlotToCleanClient(t *testing.T) {
	s := fullSlots(t)
	s.refused("203.0.113.10")
	s.refused("203.0.113.11")
	guess1 := queueLogin(t, s, "203.0.113.10:1")
	guess2 := queueLogin(t, s, "203.0.113.11:1")
	honest := queueLogin(t, s, "198.51.100.20:1")
	s.release()
	select {
	case err := <-honest:
		if err != nil {
			t.Fatal(err)
		}
	case <-guess1:
		t.Fatal("the freed slot went to a client whose login was refused, before the honest client's")
	case <-guess2:
		t.Fatal("the freed slot went to a client whose login was refused, before the honest client's")
	case <-time.After(10 * time.Second):
		t.Fatal("no login got the freed slot")
	}
	s.release()
	s.release()
	for _, ch := range []<-chan error{guess1, guess2} {
		if err := <-ch; err != nil {
			t.Errorf("a waiting login once slots are free: %v", err)
		}
	}
}

// TestLoginBudgetIPv6Aggregated: the refused logins of the /64s of one
// IPv6 /56 share a budget of login56Scale clients': new /64s do not bring
// new budgets.
func TestLoginBudgetIPv6Aggregated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	h, err := bcrypt.GenerateFromPassword([]byte("pw-a"), bcrypt.MinCost)
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
	clock := time.Now()
	cache.now = func() time.Time { return clock } // no refill
	refused := 0
	for i := range 2 * login56Scale {
		for range failedLoginBurst {
			r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
			r.RemoteAddr = fmt.Sprintf("[2001:db8:0:42%02x::1]:1", i)
			r.SetBasicAuth("alice", "guess")
			var le *loginRateError
			if _, err := cache.Authorized(r); errors.As(err, &le) && !le.busy {
				refused++
			}
		}
	}
	if want := failedLoginBurst * login56Scale; refused != failedLoginBurst*2*login56Scale-want {
		t.Fatalf("%d /64s of one /56 made %d refused guesses before 429, want %d", 2*login56Scale, failedLoginBurst*2*login56Scale-refused, want)
	}
}

// TestLoginSlotToClientAskingOnce: among clients with no refused login, a
// freed slot goes to one with a single login waiting before the older
// logins of a client keeping several queued.
func TestLoginSlotToClientAskingOnce(t *testing.T) {
	s := fullSlots(t)
	flood := []<-chan error{queueLogin(t, s, "203.0.113.10:1"), queueLogin(t, s, "203.0.113.10:2")}
	honest := queueLogin(t, s, "198.51.100.20:1")
	s.release()
	select {
	case err := <-honest:
		if err != nil {
			t.Fatal(err)
		}
	case <-flood[0]:
		t.Fatal("the freed slot went to a client with two logins queued, before the client asking once")
	case <-flood[1]:
		t.Fatal("the freed slot went to a client with two logins queued, before the client asking once")
	case <-time.After(10 * time.Second):
		t.Fatal("no login got the freed slot")
	}
	s.release()
	s.release()
	for _, ch := range flood {
		if err := <-ch; err != nil {
			t.Errorf("a waiting login once slots are free: %v", err)
		}
	}
}

// TestLoginQueueFullPushOut: guesses fill the queue; a login of a client
// with no refused login pushes out the last-ranked guess (429 at once)
// rather than being refused, and gets the next slot.
func TestLoginQueueFullPushOut(t *testing.T) {
	s := fullSlots(t)
	s.waitingBound = 2
	s.refused("203.0.113.10")
	s.refused("203.0.113.11")
	guesses := []<-chan error{queueLogin(t, s, "203.0.113.10:1"), queueLogin(t, s, "203.0.113.11:1")}
	honest := queueLogin(t, s, "198.51.100.20:1")
	pushed := 0
	for _, ch := range guesses {
		select {
		case err := <-ch:
			if !busyRefusal(err) {
				t.Fatalf("a guess in the full queue: %v, want pushed out (429)", err)
			}
			pushed++
		case <-time.After(100 * time.Millisecond):
		}
	}
	if pushed != 1 {
		t.Fatalf("%d guesses pushed out of the full queue by the honest login, want 1", pushed)
	}
	s.release()
	select {
	case err := <-honest:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the honest login did not get the freed slot")
	}
	s.release() // the guess left waiting
}
