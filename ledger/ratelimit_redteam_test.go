package ledger

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Red team: the per-client limit against one party holding an ordinary
// IPv6 delegation. Keys are free, so the per-client limit is the only one
// a stranger who rotates keys meets; the client is an IPv6 /64, and a
// home connection gets a /56 (256 /64s), a hosting customer or a free
// tunnel broker a /48 (65,536). Each /64 gets the whole burst: the one
// party posts 256 (or 65,536) times what one client may, enough to fill
// maxInFlight (4096) and Tessera's pushback, after which everyone's
// submissions (the owner's revocation included) are 503. Each IPv6
// submission is now charged to its /64, /56 and /48 (Client56Scale,
// Client48Scale).
func TestRedTeamClientLimitIPv6Delegation(t *testing.T) {
	clock := newFakeClock()
	w := newWriteLimits(RateLimits{ClientPerSecond: 0.001, ClientBurst: 2, KeyPerSecond: -1, KeyDigestPerMinute: -1, Tracked: DefaultRateLimitTracked}.withDefaults(), nil, clock.now)
	allowed := 0
	for i := range 256 { // one /56: 2001:db8:0:XX00::/56 holds 2001:db8:0:XX00::/64 .. XXff::/64
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = fmt.Sprintf("[2001:db8:0:%x::1]:4000", 0x4200+i)
		for range 2 {
			if w.allowClient(r) == nil {
				allowed++
			}
		}
	}
	clock.add(time.Millisecond)
	if allowed > 2*4 { // a /56 may reasonably count as a few clients, not 256
		t.Errorf("BYPASS (rate): one /56 made %d submissions against a per-client burst of 2 (256 /64s, each a client)", allowed)
	}
}
