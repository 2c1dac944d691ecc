// Package drivers registers the storage drivers of distribution/v3
// (registry/storage/driver) that a fleet of notarize proxies can share
// its blob cache on: s3 (AWS S3 and S3-compatible stores such as
// versitygw), gcs and azure, plus filesystem (a shared mount). Import it
// for its side effects, as distribution's own registry main does, from a
// main package only: the cloud SDKs it brings in are large, and nothing
// else in the module needs them.
package drivers

import (
	// Registered with distribution's storage driver factory by init.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/azure"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/gcs"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)
