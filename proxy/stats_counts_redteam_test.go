package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Red team: the numbers of the statistics, per digest and in total, must
// not count decisions at repositories the viewer may not pull.

// TestRedTeamStatsSharedDigest: one digest at a repository bob may pull
// (priv/public/app) and at one he may not (priv/team/app). bob sees the
// digest for the first; nothing of what he sees names the second.
func TestRedTeamStatsSharedDigest(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	img := a.pushPrivImage("team/app", "v1")
	a.pushPrivImageAt(img, "public/app", "v1")
	alice := "alice:" + alicePassword
	for range 3 {
		if st, _, _ := a.get(t, "/v2/team/app/manifests/v1", alice); st != http.StatusOK {
			t.Fatalf("alice team/app: HTTP %d", st)
		}
	}
	st, hdr, _ := a.get(t, "/v2/public/app/manifests/v1", alice)
	if st != http.StatusOK {
		t.Fatalf("alice public/app: HTTP %d", st)
	}
	digest := hdr.Get("Docker-Content-Digest")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, _, body := a.get(t, "/notarize/v1/stats?digest="+digest, alice)
		if strings.Contains(string(body), "public/app") && strings.Contains(string(body), "team/app") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's pulls are not in the statistics: %s", body)
		}
	}
	bob := "bob:" + bobPassword
	for _, p := range []string{"/notarize/v1/stats", "/notarize/v1/stats?digest=" + digest, "/ui/", "/ui/decisions.json", "/ui/digest/" + digest} {
		st, _, body := a.get(t, p, bob)
		if st != http.StatusOK {
			continue
		}
		if strings.Contains(string(body), "team/app") {
			t.Errorf("bob, denied priv/team/**, reads team/app from GET %s", p)
		}
	}
	// The numbers bob sees are those of what he may see: one pull of the
	// digest at priv/public/app, not the three at priv/team/app.
	_, _, body := a.get(t, "/notarize/v1/stats?digest="+digest, bob)
	var st2 struct {
		Decisions map[string]uint64 `json:"decisions"`
		Digests   []struct {
			Allowed uint64 `json:"allowed"`
		} `json:"digests"`
	}
	if err := json.Unmarshal(body, &st2); err != nil {
		t.Fatal(err)
	}
	if len(st2.Digests) == 1 && st2.Digests[0].Allowed != 1 {
		t.Errorf("bob sees %d allowed pulls of the digest; 3 of them were at priv/team/**, closed to him", st2.Digests[0].Allowed)
	}
	var total uint64
	for _, n := range st2.Decisions {
		total += n
	}
	if total != 1 {
		t.Errorf("bob sees %d decisions in the totals; only 1 was at a repository he may pull", total)
	}
}

// pushPrivImage writes a random image to the counting upstream and returns it.
func (a *authEnv) pushPrivImage(repo, tag string) v1.Image {
	a.t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		a.t.Fatal(err)
	}
	a.pushPrivImageAt(img, repo, tag)
	return img
}

// pushPrivImageAt writes img to the counting upstream at repo:tag.
func (a *authEnv) pushPrivImageAt(img v1.Image, repo, tag string) {
	a.t.Helper()
	ref, err := name.ParseReference(a.upHost+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		a.t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(a.t.Context())); err != nil {
		a.t.Fatal(err)
	}
}
