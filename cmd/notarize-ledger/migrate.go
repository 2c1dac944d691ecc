package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
)

// runMigrateIndex moves a stopped POSIX ledger's digest index and
// verifiable map from bbolt to pebble (issue 14): see posix.MigrateBolt.
func runMigrateIndex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notarize-ledger migrate-index", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", filepath.Join(".notarize", "ledger"), "the stopped ledger's data `directory` (posix storage)")
	mapDir := fs.String("map-dir", "", "the ledger's --map-dir, if it has one (the verifiable index's `directory`)")
	to := fs.String("to", "", "the engine to move to: pebble (required)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: notarize-ledger migrate-index --data DIR --to pebble\n\n"+
			"Moves a stopped ledger's digest index (index.db) and verifiable index (vindex.db)\n"+
			"from bbolt to pebble (index.pebble, vindex.pebble), which keeps ingest fast on a\n"+
			"large ledger. Run it with the ledger stopped: it refuses while a ledger or another\n"+
			"migration holds the files, and a ledger cannot start while it runs. It refuses\n"+
			"if an earlier migration's *.bbolt-old file is still there (move it first).\n"+
			"It copies every row into a new\n"+
			"store, syncs it, checks the row counts, and only then renames the old file aside\n"+
			"(index.db.bbolt-old, vindex.db.bbolt-old; delete them once the ledger serves).\n"+
			"Interrupted, it leaves the bbolt files in use; run it again and it starts over.\n"+
			"Both stores are derived from the log: deleting both and starting the ledger\n"+
			"rebuilds them, slowly (every entry is read again), in the engine of a new data\n"+
			"directory: pebble, unless --index-engine or $NOTARIZE_LEDGER_INDEX_ENGINE names bbolt.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *to != posix.EnginePebble {
		fmt.Fprintf(stderr, "notarize-ledger migrate-index: --to %q: want %q (the only direction)\n", *to, posix.EnginePebble)
		return errUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mdir := *data
	if *mapDir != "" {
		mdir = *mapDir
	}
	file, dir, prefixes := ledger.MapMigration()
	// The map first: a ledger whose index is bbolt and whose map is
	// pebble serves (each store's engine is the one it has).
	// The map keeps its own pebble options (no compression, its cache).
	res, err := posix.MigrateBoltWith(ctx, filepath.Join(mdir, file), filepath.Join(mdir, dir), prefixes, nil, nil, ledger.MapPebbleOptions(), logger)
	if err != nil {
		return err
	}
	report(stdout, res)
	if res, err = posix.MigrateIndex(ctx, *data, logger); err != nil {
		return err
	}
	report(stdout, res)
	engine, err := posix.DirEngine(*data)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: index engine %s\n", *data, engine)
	return nil
}

// report prints what one migration did.
func report(w io.Writer, res posix.MigrateResult) {
	if !res.Done {
		fmt.Fprintf(w, "%s: nothing to migrate\n", res.From)
		return
	}
	fmt.Fprintf(w, "%s → %s: %d rows in %s; the old file is %s\n", res.From, res.To, res.Rows, res.Took.Round(1e6), res.From+posix.OldSuffix)
}
