package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// TestUnknownUpstreamLoggedOncePerName: a request for a registry that is
// not an upstream is answered NAME_UNKNOWN and logged at info, once per
// name per interval however many requests come.
func TestUnknownUpstreamLoggedOncePerName(t *testing.T) {
	e := newEnv(t)
	paths := []string{
		"/v2/ghcr.io/team/app/manifests/latest",
		"/v2/ghcr.io/team/app/manifests/v2",
		"/v2/ghcr.io/other/blobs/sha256:" + string(bytes.Repeat([]byte("a"), 64)),
		"/v2/team/app/manifests/latest?ns=quay.io",
		"/v2/team/app/manifests/latest?ns=quay.io",
	}
	for _, p := range paths {
		code, _, body := e.do(http.MethodGet, p, nil)
		if c, _ := ociErr(t, body); code != http.StatusNotFound || c != "NAME_UNKNOWN" {
			t.Fatalf("GET %s: %d %s, want 404 NAME_UNKNOWN", p, code, c)
		}
	}
	got := map[string]int{}
	for _, line := range bytes.Split(e.logs.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil || rec["msg"] != "request for an upstream that is not configured: NAME_UNKNOWN" {
			continue
		}
		if rec["level"] != "INFO" {
			t.Errorf("logged at %v, want INFO", rec["level"])
		}
		got[rec["registry"].(string)]++
	}
	if got["ghcr.io"] != 1 || got["quay.io"] != 1 || len(got) != 2 {
		t.Errorf("unknown-upstream lines per registry: %v, want ghcr.io and quay.io once each", got)
	}
}
