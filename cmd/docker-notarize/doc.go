// Command docker-notarize is the docker notarize CLI plugin: installed in
// ~/.docker/cli-plugins it runs as `docker notarize ...`; it also runs
// standalone as `docker-notarize ...`. All behaviour lives in package plugin.
//
// It builds two ways. Without tags (main.go, `go install`) it is the full
// CLI, every command in one binary. With the tag notarize_verifyonly
// (main_verifyonly.go, CGO_ENABLED=0) it is the verify-only build that
// `make build` installs as docker-notarize: it answers the docker CLI's
// metadata query and runs `verify` itself, from the same code in package
// plugin, without linking the docker CLI's command package, and it executes
// the full CLI, built from this package without tags and installed next to
// it as notarize-cli (plugin.FullCLIName), for every other command line.
// A verify is what scripts and admission checks run most, and package
// initialisation was most of its start-up (issue 14).
package main
