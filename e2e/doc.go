// Package e2e holds end-to-end tests of docker notarize: the plugin binary
// built once, installed into a temporary DOCKER_CONFIG/cli-plugins and run by
// the real `docker` CLI against in-process ledgers (ledger/ledgertest) and an
// in-process registry (go-containerregistry pkg/registry) on loopback. It has
// no non-test code.
package e2e
