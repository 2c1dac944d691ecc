package blobcache_test

import (
	"os"
	"testing"

	"github.com/notarize/docker-notarize/proxy/blobcache/s3test"
)

// TestMain runs the tests with one S3 server (versitygw) for the S3 tests,
// each in buckets of its own, stopped after the last (s3test.Shared).
func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }
