// Package proxy is notarize-proxy: a read-only, trust-enforcing pull-through
// registry. It serves the OCI distribution-spec pull API
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md):
// /v2/, manifests and blobs (GET, HEAD), tags list and referrers, from the
// configured upstream registries only, and answers pushes, deletes, mounts
// and the catalog with UNSUPPORTED.
//
// Every manifest request is decided, cached or not: the manifest's digest is
// computed from the bytes fetched (never taken from a header), the verified
// statements about it come from the proxy's own replica of the ledger
// (package replica: no lookup leaves the process), and the trust policy
// (notarize.Policy) turns them into a verdict. The bytes decided on are the
// bytes served. A denied manifest is HTTP 403 with the OCI error code DENIED
// and a message naming the digest, the verdict and why. Blobs are
// content-addressed and checked before they are cached (package blobcache).
//
// Routing: containerd's ?ns=HOST, a /v2/UPSTREAM/REPO/… prefix, or the
// default upstream (Docker Hub unless configured otherwise). A name or ns
// that is not a configured upstream is NAME_UNKNOWN and causes no outbound
// request. Upstream credentials come from the Docker config and credential
// helpers and reach only the upstream's own host (package upstream).
//
// Every decision is one slog line and a Prometheus count; per-digest
// verification counts are served as JSON at /notarize/v1/stats.
// Decisions are also recorded in DataDir/decisions.db (bounded retention:
// decisions.go) and shown by the read-only dashboard at /ui/ (package ui,
// decisions_ui.go), behind the same client authentication.
package proxy
