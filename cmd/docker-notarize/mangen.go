//go:build ignore

// mangen writes the man pages of docker-notarize (docker-notarize(1),
// docker-notarize-sign(1), …) into the directory it is given: `make man`
// runs it as `go run ./cmd/docker-notarize/mangen.go DIR`. It is not part of
// the plugin binary, which stays free of the man page renderer.
package main

import (
	"fmt"
	"os"

	"github.com/notarize/docker-notarize/plugin"
	"github.com/notarize/docker-notarize/plugin/manpages"
)

// version is the version the pages name, from -ldflags as for the plugin.
var version = "dev"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./cmd/docker-notarize/mangen.go DIR")
		os.Exit(125)
	}
	plugin.Version = version
	if err := manpages.Generate(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
