package proxy_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team: a referrers list that two JSON readers read differently.
//
// The proxy filters an upstream's referrers list by each descriptor's
// digest, read with encoding/json (the last of two equal members wins, and
// member names match case-insensitively), then relays the descriptor's raw
// bytes. A descriptor with two digests, one the policy allows and one it
// refuses, is kept, and a client whose JSON reader takes the first member
// or matches case-sensitively (JavaScript, Python, Rust, jq) reads the
// refused digest from a list that "names only manifests the policy allows".
func TestRedTeamReferrersOneDescriptorTwoDigests(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	signed, unsigned := manifestBytes(t), manifestBytes(t)
	signedD, unsignedD := notarize.DigestOf(signed), notarize.DigestOf(unsigned)
	e.sign(e.release, signedD, notarize.StatusTrusted)
	e.sync()
	subject := notarize.DigestOf([]byte("subject"))

	for name, desc := range map[string]string{
		"repeated member":     fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","digest":"%s","size":1}`, unsignedD, signedD),
		"case-variant member": fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","Digest":"%s","size":1}`, unsignedD, signedD),
	} {
		t.Run(name, func(t *testing.T) {
			list := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc + `]}`
			ev.serve(func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.URL.Path, "/referrers/") {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				w.Header().Set("Content-Length", strconv.Itoa(len(list)))
				_, _ = w.Write([]byte(list))
			})
			code, _, body := e.do(http.MethodGet, "/v2/evil/app/referrers/"+string(subject), nil)
			if code == http.StatusOK && strings.Contains(string(body), string(unsignedD)) {
				t.Errorf("BYPASS: the filtered referrers list names the refused manifest %s: %s", unsignedD, body)
			}
			if code != http.StatusBadGateway || !strings.Contains(string(body), "MANIFEST_INVALID") {
				t.Errorf("a referrers list with two readings: HTTP %d %s, want 502 MANIFEST_INVALID", code, body)
			}
		})
	}
	// The same upstream's list with one reading is filtered and relayed:
	// the signed descriptor kept as sent, the unsigned one left out.
	signedDesc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1,"annotations":{"k":"v"}}`, signedD)
	list := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1},`, unsignedD) + signedDesc + `]}`
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		_, _ = w.Write([]byte(list))
	})
	code, _, body := e.do(http.MethodGet, "/v2/evil/app/referrers/"+string(subject), nil)
	want := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + signedDesc + `]}`
	if code != http.StatusOK || string(body) != want {
		t.Errorf("a list with one reading: HTTP %d %s, want 200 %s", code, body, want)
	}
}
