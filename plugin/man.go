package plugin

import (
	"fmt"
	"os"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// GenerateManPages writes the man pages of docker-notarize into dir, one
// per command of the tree in section 1: docker-notarize(1),
// docker-notarize-sign(1), docker-notarize-key-list(1) and so on, as docker's
// own docker-image-ls(1). They are generated from the same command tree as
// --help, with the defaults a fresh environment has (no NOTARIZE_*
// variables), so they do not depend on who runs `make man`.
func GenerateManPages(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	dockerCli, err := command.NewDockerCli()
	if err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	e := defaultEnv()
	e.lookupEnv = func(string) (string, bool) { return "", false }
	root := newRootCmd("docker-notarize", false, dockerCli, e)
	visitAll(root, func(c *cobra.Command) { c.DisableAutoGenTag = true })
	header := &doc.GenManHeader{
		Title:   "DOCKER-NOTARIZE",
		Section: "1",
		Source:  "docker notarize " + Version,
		Manual:  "docker notarize manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return nil
}
