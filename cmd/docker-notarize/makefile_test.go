package main

import (
	"os/exec"
	"strings"
	"testing"
)

// `make build` builds the plugin twice: the verify-only front static, with
// its tag (it sends a verify whose names the C library may resolve
// otherwise to the full CLI: plugin.NeedsSystemResolver), and the full CLI with
// cgo (PKCS#11, the system's resolver). The e2e tests build as buildCmd
// says, not as the Makefile does: this holds the Makefile to it (review).
func TestMakeBuildsThePluginTwice(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	cmd := exec.Command("make", "-n", "build")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	var front, full int
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "./cmd/docker-notarize") {
			continue
		}
		static := strings.Contains(line, "CGO_ENABLED=0")
		switch {
		case strings.Contains(line, "-tags notarize_verifyonly") && strings.Contains(line, "/docker-notarize ") && static:
			front++
		case !strings.Contains(line, "-tags") && strings.Contains(line, "/notarize-cli ") && !static:
			full++
		default:
			t.Errorf("make build builds the plugin otherwise: %s", line)
		}
	}
	if front != 1 || full != 1 {
		t.Errorf("make -n build: %d verify-only and %d full builds of ./cmd/docker-notarize, want 1 and 1:\n%s", front, full, out)
	}
}
