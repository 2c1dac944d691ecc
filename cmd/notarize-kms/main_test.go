package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// buildHelper builds this command into dir as `make build` does (-trimpath,
// no cgo), so that their builds share one cache.
func buildHelper(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, kmswire.HelperName)
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// kmsSDKs are the packages of the four KMS providers and their SDKs.
var kmsSDKs = []string{
	"github.com/sigstore/sigstore/pkg/signature/kms/aws",
	"github.com/sigstore/sigstore/pkg/signature/kms/gcp",
	"github.com/sigstore/sigstore/pkg/signature/kms/azure",
	"github.com/sigstore/sigstore/pkg/signature/kms/hashivault",
	"github.com/aws/aws-sdk-go-v2/service/kms",
	"cloud.google.com/go/kms",
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault",
	"github.com/hashicorp/vault/api",
}

func deps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	m := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		m[p] = true
	}
	return m
}

// The KMS SDKs are linked into the helper and not into the plugin, whose
// every run (verify, the docker CLI's metadata query) would pay for their
// package initialisation (issue 14).
func TestKMSSDKsOnlyInTheHelper(t *testing.T) {
	helper := deps(t, "github.com/notarize/docker-notarize/cmd/notarize-kms")
	plugin := deps(t, "github.com/notarize/docker-notarize/cmd/docker-notarize")
	for _, sdk := range kmsSDKs {
		found := false
		for p := range helper {
			found = found || p == sdk || strings.HasPrefix(p, sdk+"/")
		}
		if !found {
			t.Errorf("the helper does not link %s", sdk)
		}
		for p := range plugin {
			if p == sdk || strings.HasPrefix(p, sdk+"/") {
				t.Errorf("the plugin links %s: the KMS SDKs belong in %s", p, kmswire.HelperName)
			}
		}
	}
}

// The built helper answers a request on stdin with a response on stdout.
func TestBuiltHelper(t *testing.T) {
	bin := buildHelper(t, t.TempDir())
	cmd := exec.Command(bin)
	cmd.Stdin = strings.NewReader(`{"version":1,"op":"public-key","uri":"evil://key","hash":"sha256"}`)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("refused request: %v", err)
	}
	resp, err := kmswire.Decode(out.Bytes())
	if err != nil || resp.Error == nil || resp.Error.Code != kmswire.CodeUnsupported {
		t.Fatalf("response %q: %+v, %v", out.String(), resp, err)
	}
	if err := exec.Command(bin, "--help").Run(); err == nil {
		t.Fatal("--help: exit 0, want a usage error")
	}
}

// Installed next to the plugin in a cli-plugins directory, as make install
// does, the helper is not taken for a docker CLI plugin: `docker --help`
// lists no invalid plugin (it did when the helper was named
// docker-notarize-kms), and the docker CLI never runs it.
func TestDockerCLIIgnoresTheHelper(t *testing.T) {
	if strings.HasPrefix(kmswire.HelperName, "docker-") {
		t.Fatalf("helper name %q: the docker CLI takes docker-* files in cli-plugins for plugins", kmswire.HelperName)
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("the docker CLI is not installed (CI is set: not skipping)")
		}
		t.Skip("the docker CLI is not installed; the CI installs it (.ci/run)")
	}
	config := t.TempDir()
	plugins := filepath.Join(config, "cli-plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	// A marker-writing stand-in under the helper's name shows whether the
	// docker CLI runs it; the real build shows it is not listed.
	marker := filepath.Join(t.TempDir(), "ran")
	stub := "#!/bin/sh\ntouch '" + marker + "'\n"
	if err := os.WriteFile(filepath.Join(plugins, kmswire.HelperName), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(docker, "--help")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config, "DOCKER_CLI_HINTS=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker --help: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Invalid Plugins") || strings.Contains(string(out), "notarize-kms") {
		t.Fatalf("docker --help lists the helper:\n%s", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("docker --help ran the helper")
	}
}
