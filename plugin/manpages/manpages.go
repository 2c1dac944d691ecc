// Package manpages renders the man pages of docker-notarize (cobra/doc):
// docker-notarize(1), docker-notarize-sign(1), docker-notarize-key-list(1)
// and so on, as docker's own docker-image-ls(1). `make man` runs it through
// cmd/docker-notarize/mangen.go; it is a package of its own so that the
// plugin binary does not link the renderer (cobra/doc, go-md2man,
// blackfriday), whose package initialisation would run on every verify.
package manpages

import (
	"fmt"
	"os"

	"github.com/spf13/cobra/doc"

	"github.com/notarize/docker-notarize/plugin"
)

// Generate writes the man pages into dir, one per command, in section 1.
func Generate(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	root, err := plugin.ManCommandTree()
	if err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	header := &doc.GenManHeader{
		Title:   "DOCKER-NOTARIZE",
		Section: "1",
		Source:  "docker notarize " + plugin.Version,
		Manual:  "docker notarize manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return nil
}
