package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/notarize/docker-notarize/ledger"
)

// runMapRebuild drops the verifiable index of a stopped POSIX ledger
// (issue 11): the ledger folds it again from its log when it next starts.
func runMapRebuild(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notarize-ledger map-rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", filepath.Join(".notarize", "ledger"), "the stopped ledger's data `directory` (posix storage)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: notarize-ledger map-rebuild [--data DIR]\n\nRebuilds the verifiable index from the log: run it with the ledger stopped;\nthe ledger recomputes the map from every entry when it starts, and commits\na new root.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if err := ledger.RebuildMap(*data); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the verifiable index of %s will be rebuilt from the log when the ledger starts\n", *data)
	return nil
}
