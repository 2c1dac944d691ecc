//go:build !notarize_verifyonly

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/cmd/docker-notarize/internal/fastmeta"
	"github.com/notarize/docker-notarize/plugin"
)

// dockerEncoding is how the docker CLI's plugin library writes metadata
// (cli-plugins/plugin.newMetadataSubcommand).
func dockerEncoding(t *testing.T, version string) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "     ")
	if err := enc.Encode(plugin.Metadata(version)); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestFastMetadataIsTheDockerCLIs: the early answer is byte for byte what
// RunPlugin would print, for any version string the build may set.
func TestFastMetadataIsTheDockerCLIs(t *testing.T) {
	for _, v := range []string{"dev", "", "v1.2.3-4-gabcdef0-dirty", `a"b\c`, "tab\tnl\ncr\rbs\bff\fnul\x00esc\x1b", "<&>", "é✓😀", "\u2028\u2029", "bad\xffutf8\xc3"} {
		if got, want := fastmeta.JSON(v), dockerEncoding(t, v); got != want {
			t.Errorf("version %q:\n got %q\nwant %q", v, got, want)
		}
	}
}

// buildPlugin builds this command as `make build` does (-trimpath, which
// also lets the build share its cache with the end-to-end tests'), with the
// version set by the linker in package main.
func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "docker-notarize")
	out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+testVersion, "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const testVersion = "v0.0.0-fastmeta+test"

// TestMetadataAnsweredBeforeHeavyInits runs the built plugin as the docker
// CLI does for its metadata and checks that it prints RunPlugin's document
// with the version the linker set (through the go:linkname), and, with the
// runtime's init trace, that it answered before the docker CLI, sigstore,
// the KMS SDKs, regexp, reflect or the protobuf registries were
// initialised: the point of the early answer. Every other command still
// initialises them.
func TestMetadataAnsweredBeforeHeavyInits(t *testing.T) {
	bin := buildPlugin(t)
	run := func(args ...string) (stdout, inits string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1", "DOCKER_CONFIG="+t.TempDir())
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		return out.String(), errb.String()
	}
	out, trace := run(fastmeta.Arg)
	if want := dockerEncoding(t, testVersion); out != want {
		t.Fatalf("metadata:\n got %q\nwant %q", out, want)
	}
	n := strings.Count(trace, "init ")
	for _, heavy := range []string{"regexp", "reflect", "google.golang.org/protobuf", "github.com/docker/cli", "github.com/sigstore", "github.com/spf13/cobra", "github.com/notarize/docker-notarize/plugin"} {
		if strings.Contains(trace, "init "+heavy+" ") || strings.Contains(trace, "init "+heavy+"/") {
			t.Errorf("%s was initialised before the metadata answer (%d packages initialised)", heavy, n)
		}
	}
	if n > 60 {
		t.Errorf("%d packages initialised before the metadata answer, want a few dozen at most:\n%s", n, trace)
	}
	t.Logf("metadata answered after %d package inits", n)

	// Any other arguments go the usual way, and the version is the same.
	out, trace = run("version")
	if !strings.Contains(trace, "init github.com/docker/cli") || !strings.Contains(out, testVersion) {
		t.Fatalf("version command: the docker CLI not initialised, or not version %s:\n%s", testVersion, out)
	}
	out, _ = run(fastmeta.Arg, "extra")
	if strings.Contains(out, `"SchemaVersion"`) && !strings.Contains(out, testVersion) {
		t.Fatalf("metadata with an extra argument: %s", out)
	}
}
