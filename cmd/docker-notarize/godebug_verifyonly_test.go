//go:build notarize_verifyonly

package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// contextSetsGoDebug resolves the context as docker/cli's
// resolveContextName does and answers true exactly when docker/cli's
// Initialize could set GODEBUG from it (or cannot tell): the e2e test
// depends on the docker CLI's version (from v29 the docker CLI sets
// GODEBUG itself before it runs a plugin), this one does not.
func TestContextSetsGoDebug(t *testing.T) {
	cfg := t.TempDir()
	meta := func(name, metadata string) {
		dir := filepath.Join(cfg, "contexts", "meta", fmt.Sprintf("%x", sha256.Sum256([]byte(name))))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		doc := `{"Name":"` + name + `","Metadata":` + metadata + `,"Endpoints":{"docker":{"Host":"unix:///x.sock"}}}`
		if err := os.WriteFile(filepath.Join(dir, "meta.json"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	meta("gd", `{"GODEBUG":"x509negativeserial=1"}`)
	meta("plain", `{"Description":"x"}`)
	meta("../a/b", `{"GODEBUG":"x509negativeserial=1"}`)
	meta("nonstring", `{"GODEBUG":1}`)
	meta("null", `null`)
	for _, tc := range []struct {
		name           string
		env            map[string]string
		currentContext string
		want           bool
	}{
		{"no context", nil, "", false},
		{"DOCKER_CONTEXT with GODEBUG", map[string]string{"DOCKER_CONTEXT": "gd"}, "", true},
		{"DOCKER_CONTEXT without", map[string]string{"DOCKER_CONTEXT": "plain"}, "gd", false},
		{"default", map[string]string{"DOCKER_CONTEXT": "default"}, "gd", false},
		{"DOCKER_HOST wins", map[string]string{"DOCKER_CONTEXT": "gd", "DOCKER_HOST": "unix:///x.sock"}, "", false},
		{"GODEBUG already set", map[string]string{"DOCKER_CONTEXT": "gd", "GODEBUG": "x=1"}, "", false},
		{"config's currentContext", nil, "gd", true},
		{"config's currentContext, DOCKER_HOST", map[string]string{"DOCKER_HOST": "unix:///x.sock"}, "gd", false},
		{"a name with path characters", map[string]string{"DOCKER_CONTEXT": "../a/b"}, "", true},
		{"an unknown context: the full CLI reports it", map[string]string{"DOCKER_CONTEXT": "nope"}, "", true},
		{"a non-string GODEBUG (docker ignores it): full CLI, harmless", map[string]string{"DOCKER_CONTEXT": "nonstring"}, "", true},
		{"null metadata", map[string]string{"DOCKER_CONTEXT": "null"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", cfg)
			for _, k := range []string{"DOCKER_CONTEXT", "DOCKER_HOST", "GODEBUG"} {
				t.Setenv(k, tc.env[k])
			}
			doc := `{}`
			if tc.currentContext != "" {
				doc = `{"currentContext":"` + tc.currentContext + `"}`
			}
			if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := contextSetsGoDebug(); got != tc.want {
				t.Errorf("contextSetsGoDebug() = %v, want %v", got, tc.want)
			}
		})
	}
}
