package blobcache_test

import (
	"os"
	"testing"

	"github.com/notarize/docker-notarize/proxy/blobcache/seaweedtest"
)

// TestMain runs the tests with one SeaweedFS for the S3 tests, each in
// buckets of its own, stopped after the last (seaweedtest.Shared).
func TestMain(m *testing.M) { os.Exit(seaweedtest.Main(m)) }
