package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// notInPlugin are packages the plugin binary must not link: every run of
// it (a verify, the docker CLI's metadata query) initialises every package
// it links, and these serve no verify. The KMS providers and their SDKs
// live in the helper notarize-kms; the man page renderer in plugin/manpages,
// which only `make man` runs (issue 14).
var notInPlugin = []string{
	"github.com/sigstore/sigstore/pkg/signature/kms/",
	"github.com/aws/aws-sdk-go-v2/service/kms",
	"cloud.google.com/go/kms",
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault",
	"github.com/hashicorp/vault/api",
	"github.com/spf13/cobra/doc",
	"github.com/cpuguy83/go-md2man",
	"github.com/russross/blackfriday",
}

func TestPluginLinksNoStartUpWeight(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range notInPlugin {
			if p == strings.TrimSuffix(bad, "/") || strings.HasPrefix(p, strings.TrimSuffix(bad, "/")+"/") {
				t.Errorf("the plugin links %s", p)
			}
		}
	}
}

// notInVerifyOnly are packages the verify-only build (tag
// notarize_verifyonly, as `make build` builds docker-notarize) must not
// link besides notInPlugin: the docker CLI's command package and what comes
// with it (its daemon client, gRPC, distribution/reference's regular
// expressions), whose package initialisation was most of a verify's
// start-up, and the PKCS#11 library (the full CLI signs).
var notInVerifyOnly = []string{
	"github.com/docker/cli/cli/command/",
	"github.com/docker/cli/cli-plugins/plugin",
	"github.com/distribution/reference",
	"github.com/moby/moby/client",
	"google.golang.org/grpc/",
	"github.com/ThalesGroup/crypto11",
}

func TestVerifyOnlyBuildLinksNoDockerCLICommand(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "notarize_verifyonly", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/notarize/docker-notarize/plugin") {
		t.Fatalf("the verify-only build does not link package plugin: %q", deps)
	}
	for _, p := range deps {
		if p == "github.com/docker/cli/cli" {
			t.Errorf("the verify-only build links %s", p)
		}
		for _, bad := range append(notInVerifyOnly, notInPlugin...) {
			if p == strings.TrimSuffix(bad, "/") || strings.HasPrefix(p, strings.TrimSuffix(bad, "/")+"/") {
				t.Errorf("the verify-only build links %s", p)
			}
		}
	}
}
