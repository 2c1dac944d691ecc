package blobcache

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/distribution/distribution/v3/configuration"
)

// Storage is the storage section of a proxy's configuration, parsed: where
// the blob cache lives. It reads distribution's configuration shape
// (configuration.Storage), so that a distribution operator recognises it:
//
//	storage:
//	  filesystem:                 # the default: this instance's disk only
//	    rootdirectory: /var/lib/notarize-proxy/blobs
//
//	storage:
//	  s3:                         # a fleet: every instance on one bucket
//	    region: us-east-1
//	    bucket: notarize-blobs
//	    regionendpoint: http://127.0.0.1:8333   # an S3-compatible store
//	    forcepathstyle: true
//	  redirect:
//	    disable: false            # redirect clients to presigned URLs
//
// With filesystem the cache is the local LRU cache (bounded by
// cacheMaxBytes). With any other driver (s3, gcs, azure: distribution's
// drivers and parameters) the local cache stays as this instance's hot
// tier and staging area, and the driver's store is shared by the fleet.
// Unlike distribution, blobs are streamed through the proxy unless a
// redirect section says disable: false.
type Storage struct {
	// Driver is the driver's name: "filesystem" or a distribution driver.
	Driver string
	// Params are the driver's parameters, as distribution documents them.
	Params map[string]any
	// LocalDir is the filesystem driver's rootdirectory ("": the default).
	LocalDir string
	// Redirect says to answer blob requests the shared store can serve
	// with a redirect to the driver's URL.
	Redirect bool
}

// Shared reports whether the storage is shared by a fleet (not filesystem).
func (s Storage) Shared() bool { return s.Driver != "filesystem" }

// ParseStorage reads a storage section; an empty one is filesystem at the
// default directory. It refuses several drivers, distribution's sections
// that mean nothing for a cache (maintenance, delete, tag, cache), a
// filesystem driver with parameters other than rootdirectory, and a
// redirect section that is not {disable: BOOL}.
func ParseStorage(st configuration.Storage) (Storage, error) {
	var drivers []string
	out := Storage{Driver: "filesystem"}
	for _, k := range slices.Sorted(maps.Keys(st)) {
		switch k {
		case "redirect":
			r, err := parseRedirect(st[k])
			if err != nil {
				return Storage{}, err
			}
			out.Redirect = r
		case "maintenance", "delete", "tag", "cache":
			return Storage{}, fmt.Errorf("storage: %s: distribution's registry option; the proxy's cache does not use it (bound a shared store with a bucket lifecycle rule, see docs/DEPLOYMENT.md)", k)
		default:
			drivers = append(drivers, k)
		}
	}
	switch len(drivers) {
	case 0:
	case 1:
		out.Driver = drivers[0]
		out.Params = map[string]any(st[drivers[0]])
	default:
		return Storage{}, fmt.Errorf("storage: one driver, not %d (%v)", len(drivers), drivers)
	}
	if out.Driver == "filesystem" {
		for k, v := range out.Params {
			if k != "rootdirectory" {
				return Storage{}, fmt.Errorf("storage: filesystem: unknown parameter %q (only rootdirectory; bound it with cacheMaxBytes)", k)
			}
			s, ok := v.(string)
			if !ok || s == "" {
				return Storage{}, errors.New("storage: filesystem: rootdirectory must be a non-empty string")
			}
			out.LocalDir = s
		}
		if out.Redirect {
			return Storage{}, errors.New("storage: redirect needs a shared store that can presign URLs (s3, gcs, azure), not filesystem")
		}
	}
	return out, nil
}

func parseRedirect(p configuration.Parameters) (bool, error) {
	for k := range p {
		if k != "disable" {
			return false, fmt.Errorf("storage: redirect: unknown parameter %q (only disable)", k)
		}
	}
	v, ok := p["disable"]
	if !ok {
		return false, errors.New("storage: redirect: say disable: false to redirect clients, or leave the section out to stream")
	}
	disable, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("storage: redirect: disable must be true or false, not %v", v)
	}
	return !disable, nil
}
