package proxy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
)

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	sv := newSigner(t)
	pub, _ := newSigner(t).PublicKey()
	inline, _ := cryptoutils.MarshalPublicKeyToPEM(pub)
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeKey(t, filepath.Join(dir, "keys", "release.pub"), sv)
	good := write("good.yaml", "signers:\n  release: {keys: [keys/release.pub]}\n  inline:\n    keys:\n      - |\n"+
		indent(string(inline), "        ")+"rules:\n  - match: '**'\n    require: [release, inline]\n")
	ev, err := proxy.LoadPolicy(good)
	if err != nil {
		t.Fatal(err)
	}
	relPub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := notarize.KeyID(relPub)
	if ev.SignerName(id) != "release" {
		t.Fatalf("release key not bound: %q", ev.SignerName(id))
	}
	for name, doc := range map[string]string{
		"missing key file": "signers: {r: {keys: [nope.pub]}}\nrules: [{match: '**', require: [r]}]\n",
		"not a key":        "signers: {r: {keys: [good.yaml]}}\nrules: [{match: '**', require: [r]}]\n",
		"bad policy":       "rules: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := proxy.LoadPolicy(write("bad.yaml", doc)); err == nil {
				t.Fatal("loaded")
			}
		})
	}
	if _, err := proxy.LoadPolicy(write("bad2.yaml", "rules: []\n")); !errors.Is(err, notarize.ErrBadPolicy) {
		t.Fatalf("error %v is not ErrBadPolicy", err)
	}
}

func indent(s, pfx string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString(pfx + l)
		}
	}
	return b.String()
}

func TestLoadFileConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "proxy.yaml")
	doc := `addr: 0.0.0.0:5000
data: data
upstreams:
  - {name: docker.io, url: "https://registry-1.docker.io"}
  - {name: gitlab, url: "https://registry.gitlab.com", authHosts: [gitlab.com]}
defaultUpstream: docker.io
policy: policy.yaml
ledger: http://127.0.0.1:7070
ledgerKey: ledger.pub
maxStaleness: 90s
`
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := proxy.LoadFileConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if fc.Data != filepath.Join(dir, "data") || fc.Policy != filepath.Join(dir, "policy.yaml") || fc.LedgerKey != filepath.Join(dir, "ledger.pub") ||
		time.Duration(fc.MaxStaleness) != 90*time.Second || len(fc.Upstreams) != 2 || fc.Upstreams[1].AuthHosts[0] != "gitlab.com" {
		t.Fatalf("%+v", fc)
	}
	if err := os.WriteFile(p, []byte("adress: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.LoadFileConfig(p); err == nil {
		t.Fatal("unknown field accepted")
	}
}
