package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRefusalLoggedOncePerInterval: a client retrying a refused pull in a
// loop (kubelet's image pull backoff, a CI job, dockerd going through its
// mirrors) makes one decision line, not one per request; every request is
// still refused and counted in the metrics; another kind of refusal, and
// every allowed pull, is logged at once.
func TestRefusalLoggedOncePerInterval(t *testing.T) {
	e := newEnv(t)
	unsigned := digestOf(t, e.push("app/unsigned", "v1"))
	untrusted := digestOf(t, e.push("app/untrusted", "v1"))
	signed := digestOf(t, e.push("app/signed", "v1"))
	e.sign(e.release, signed, notarize.StatusTrusted)
	e.sign(e.release, untrusted, notarize.StatusUntrusted)
	e.sync()

	count := func(d notarize.Digest) (n int, last map[string]any) {
		for _, l := range e.decisions() {
			if l["digest"] == string(d) {
				n, last = n+1, l
			}
		}
		return n, last
	}
	for range 30 {
		if code, _, _ := e.do(http.MethodGet, manifestPath("local/app/unsigned", "v1"), nil); code != http.StatusForbidden {
			t.Fatalf("unsigned pull: %d, want 403", code)
		}
	}
	if n, l := count(unsigned); n != 1 || l["verdict"] != "UNKNOWN" || l["allowed"] != false || l["more_requests"] != 0.0 {
		t.Fatalf("30 refusals of one pull: %d decision lines (last %v), want 1", n, l)
	}
	if code, _, _ := e.do(http.MethodGet, manifestPath("local/app/untrusted", "v1"), nil); code != http.StatusForbidden {
		t.Fatalf("untrusted pull: %d, want 403", code)
	}
	if n, l := count(untrusted); n != 1 || l["verdict"] != "UNTRUSTED" {
		t.Fatalf("another refusal: %d lines (%v), want 1", n, l)
	}
	for range 3 {
		if code, _, _ := e.do(http.MethodGet, manifestPath("local/app/signed", "v1"), nil); code != http.StatusOK {
			t.Fatalf("signed pull: %d", code)
		}
	}
	if n, _ := count(signed); n != 3 {
		t.Fatalf("3 allowed pulls: %d decision lines, want 3", n)
	}
	_, _, metrics := e.do(http.MethodGet, "/metrics", nil)
	if want := `notarize_proxy_decisions_total{mode="enforce",upstream="local",verdict="UNKNOWN"} 30`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// TestBlobRefusalLoggedOncePerInterval: a client asking again and again for
// a blob no allowed manifest references (a scanner, a stolen digest) makes
// one "blob refused" line per blob per interval; every request is refused.
func TestBlobRefusalLoggedOncePerInterval(t *testing.T) {
	e := newEnv(t)
	img := e.push("app/unsigned", "v1")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if code, _, _ := e.do(http.MethodGet, "/v2/local/app/unsigned/blobs/"+d.String(), nil); code != http.StatusNotFound {
			t.Fatalf("blob of a manifest never allowed: %d, want 404", code)
		}
	}
	n := 0
	for _, line := range bytes.Split(e.logs.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == "blob refused" && m["digest"] == d.String() {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("20 refusals of one blob: %d log lines, want 1", n)
	}
}

// TestAuthRefusalsLoggedOncePerInterval: a client retrying wrong
// credentials (a script with a stale password, or guessing) and a user
// pulling what the access rules refuse make one line per kind per
// interval, not one per request; every request is still refused.
func TestAuthRefusalsLoggedOncePerInterval(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	for range 20 {
		if st, _, _ := a.get(t, "/v2/", "alice:wrong"); st != http.StatusUnauthorized {
			t.Fatalf("wrong password: HTTP %d", st)
		}
		if st, _, _ := a.get(t, "/v2/team/app/manifests/v1", "bob:"+bobPassword); st != http.StatusForbidden {
			t.Fatalf("bob pulling team/app: HTTP %d", st)
		}
	}
	count := map[string]int{}
	for _, line := range bytes.Split(a.logs.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			count[fmt.Sprint(m["msg"])]++
		}
	}
	if count["client not authenticated"] != 1 || count["access denied"] != 1 {
		t.Fatalf("20 wrong passwords and 20 refused pulls: %d and %d lines, want 1 and 1", count["client not authenticated"], count["access denied"])
	}
}
