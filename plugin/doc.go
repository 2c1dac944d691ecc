// Package plugin is the command tree of `docker notarize`: a Docker CLI plugin
// (github.com/docker/cli/cli-plugins) that also runs standalone as
// `docker-notarize`.
//
// It owns what sits between a person and the ledger: the local key store
// (keystore.go), image reference and file resolution to a content digest
// with the manifest hashed locally (resolve.go, httpguard.go), the commands
// (key, sign, untrust, unsupport, verify, inspect, audit — the judgement of
// every image and container of a Docker daemon, or of a repository's tags), their text and JSON output
// (output.go) and the mapping of verdicts and failures to exit codes
// (exitcode.go): TRUSTED 0, UNTRUSTED 1, UNKNOWN 2, UNSUPPORTED 3, could not
// verify 4, usage errors 125.
//
// Each command is an options struct, a runX(ctx, dockerCli, opts) function and
// a cobra constructor, after docker/buildx. Ledger I/O goes through package
// ledgerclient, which verifies every checkpoint, proof and signature; the
// verdict comes from notarize.Decide.
package plugin
