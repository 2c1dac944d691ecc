package main

import (
	"os/exec"
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
