package plugin

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// TestDockerConfigKeychain: credentials come from the config directory the
// docker CLI uses (docker --config DIR), Docker Hub under its legacy key, a
// repository entry before its registry's, and anonymous when there is none.
func TestDockerConfigKeychain(t *testing.T) {
	dir := t.TempDir()
	auth := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
	cfg := `{"auths": {
		"registry.example": {"auth": "` + auth("reg-user", "reg-pass") + `"},
		"registry.example/team/app": {"auth": "` + auth("repo-user", "repo-pass") + `"},
		"https://index.docker.io/v1/": {"auth": "` + auth("hub-user", "hub-pass") + `"}
	}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// DOCKER_CONFIG points elsewhere: the keychain must not read it.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	kc := dockerConfigKeychain{dir: func() string { return dir }}
	for _, tc := range []struct {
		repo string
		want authn.AuthConfig
	}{
		{"registry.example/other", authn.AuthConfig{Username: "reg-user", Password: "reg-pass"}},
		{"registry.example/team/app", authn.AuthConfig{Username: "repo-user", Password: "repo-pass"}},
		{"alpine", authn.AuthConfig{Username: "hub-user", Password: "hub-pass"}},
		{"elsewhere.example/app", authn.AuthConfig{}},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			repo, err := name.NewRepository(tc.repo)
			if err != nil {
				t.Fatal(err)
			}
			a, err := kc.Resolve(repo)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == (authn.AuthConfig{}) {
				if a != authn.Anonymous {
					t.Fatalf("want anonymous, got %+v", got)
				}
				return
			}
			if got.Username != tc.want.Username || got.Password != tc.want.Password {
				t.Fatalf("credentials %s/%s, want %s/%s", got.Username, got.Password, tc.want.Username, tc.want.Password)
			}
		})
	}
	if _, err := (dockerConfigKeychain{dir: func() string { return dir }}).Resolve(name.MustParseReference("x.example/a").Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Resolve(name.MustParseReference("registry.example/a").Context()); err == nil {
		t.Fatal("a broken docker config must be an error, not anonymous")
	}
}
