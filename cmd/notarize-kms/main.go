// Command notarize-kms is the docker-notarize plugin's KMS helper:
// installed next to the plugin (make install), it is run by the plugin, by
// absolute path, for keys held by AWS KMS, Google Cloud KMS, Azure Key Vault
// or HashiCorp Vault transit. It answers one request on stdin (package
// plugin/kmswire) and exits; all behaviour lives in package plugin/kmshelper.
package main

import (
	"os"

	"github.com/notarize/docker-notarize/plugin/kmshelper"
)

func main() {
	os.Exit(kmshelper.Run())
}
