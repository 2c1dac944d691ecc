package blobcache_test

import (
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"go.yaml.in/yaml/v3"

	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// TestParseStorage reads distribution's storage section as the proxy's
// configuration file gives it (YAML), and refuses what it cannot honour
// with an error that names the problem.
func TestParseStorage(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       blobcache.Storage
		wantErr    string
	}{
		{name: "empty", yaml: "", want: blobcache.Storage{Driver: "filesystem"}},
		{name: "filesystem", yaml: "filesystem: {rootdirectory: /var/cache/b}", want: blobcache.Storage{Driver: "filesystem", LocalDir: "/var/cache/b"}},
		{name: "filesystem as a word", yaml: "filesystem", want: blobcache.Storage{Driver: "filesystem"}},
		{name: "s3 streams by default", yaml: "s3: {region: us-east-1, bucket: b}", want: blobcache.Storage{Driver: "s3"}},
		{name: "s3 redirect", yaml: "s3: {bucket: b}\nredirect: {disable: false}", want: blobcache.Storage{Driver: "s3", Redirect: true}},
		{name: "s3 redirect disabled", yaml: "s3: {bucket: b}\nredirect: {disable: true}", want: blobcache.Storage{Driver: "s3"}},
		{name: "two drivers", yaml: "s3: {bucket: b}\ngcs: {bucket: b}", wantErr: "exactly one storage type"},
		{name: "maintenance", yaml: "s3: {bucket: b}\nmaintenance: {uploadpurging: {enabled: false}}", wantErr: "maintenance"},
		{name: "delete", yaml: "s3: {bucket: b}\ndelete: {enabled: true}", wantErr: "delete"},
		{name: "redirect without disable", yaml: "s3: {bucket: b}\nredirect: {}", wantErr: "disable: false"},
		{name: "redirect not a bool", yaml: "s3: {bucket: b}\nredirect: {disable: \"no\"}", wantErr: "true or false"},
		{name: "redirect unknown key", yaml: "s3: {bucket: b}\nredirect: {disable: false, expiry: 5m}", wantErr: "unknown parameter"},
		{name: "filesystem redirect", yaml: "filesystem: {}\nredirect: {disable: false}", wantErr: "presign"},
		{name: "filesystem unknown parameter", yaml: "filesystem: {maxthreads: 5}", wantErr: "maxthreads"},
		{name: "filesystem empty root", yaml: "filesystem: {rootdirectory: \"\"}", wantErr: "rootdirectory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st configuration.Storage
			err := yaml.Unmarshal([]byte(tc.yaml), &st)
			var got blobcache.Storage
			if err == nil {
				got, err = blobcache.ParseStorage(st)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Driver != tc.want.Driver || got.LocalDir != tc.want.LocalDir || got.Redirect != tc.want.Redirect {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestOpenSharedUnknownDriver: a driver this program did not register is a
// clear start-up error, not a silent local-only cache.
func TestOpenSharedUnknownDriver(t *testing.T) {
	_, err := blobcache.OpenShared(t.Context(), "swift", map[string]any{"container": "b"}, blobcache.SharedConfig{InstanceDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("OpenShared(swift), a driver not registered, = %v", err)
	}
}
