package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/mysql"
)

// runMapRebuild rebuilds the verifiable index from the log (issue 11): for
// a stopped POSIX ledger it drops the map's file, which the ledger folds
// again when it next starts; for MySQL it drops the map shared by every
// instance in the database, which the running instances fold again.
func runMapRebuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notarize-ledger map-rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("storage", storagePOSIX, "where the log lives: posix (--data) or mysql (--mysql-dsn)")
	data := fs.String("data", filepath.Join(".notarize", "ledger"), "the stopped ledger's data `directory` (posix storage)")
	mapDir := fs.String("map-dir", "", "the ledger's --map-dir, if it has one (the verifiable index's `directory`; posix storage)")
	dsn := fs.String("mysql-dsn", "", "MySQL/MariaDB `DSN` user:pass@tcp(host:3306)/dbname for --storage mysql; also $"+envMySQLDSN)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: notarize-ledger map-rebuild [--data DIR [--map-dir DIR] | --storage mysql --mysql-dsn DSN]\n\n"+
			"Rebuilds the verifiable index from the log.\n"+
			"posix: run it with the ledger stopped; the ledger recomputes the map from\n"+
			"every entry when it starts, and commits a new root.\n"+
			"mysql: instances may keep running; they recompute the one map they share\n"+
			"and commit a root covering the whole log. Until then lookups carry no map\n"+
			"proof (clients read the whole log as its tail, and refuse a long one).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	switch *kind {
	case storagePOSIX:
		dir := firstNonEmpty(*mapDir, *data)
		if _, err := os.Stat(dir); err != nil { // a mistyped path is not "nothing to drop"
			return fmt.Errorf("map-rebuild: %w", err)
		}
		// Both engines' files (an interrupted migration) are dropped alike.
		if engine, err := ledger.MapEngine(dir); err == nil && engine == "" { // say so, rather than claim a rebuild
			fmt.Fprintf(stderr, "notarize-ledger map-rebuild: %s holds no verifiable index (a ledger run with --map-dir keeps it there: pass the same --map-dir); the ledger builds one from the log when it starts\n", dir)
			return nil
		}
		if err := ledger.RebuildMap(dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "the verifiable index in %s will be rebuilt from the log when the ledger starts\n", dir)
		return nil
	case storageMySQL:
		if *mapDir != "" {
			fmt.Fprintf(stderr, "notarize-ledger map-rebuild: --map-dir %q: only for --storage posix (mysql keeps the map in the database)\n", *mapDir)
			return errUsage
		}
		cfg := mysql.Config{DSN: firstNonEmpty(*dsn, getenv(envMySQLDSN)),
			Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("--mysql-dsn: %w", err)
		}
		st, err := mysql.New(ctx, cfg)
		if err != nil {
			return err
		}
		err = ledger.RebuildSharedMap(ctx, st)
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "the verifiable index in %s was dropped: the running instances rebuild it from the log\n", mysql.RedactDSN(cfg.DSN))
		return nil
	}
	fmt.Fprintf(stderr, "notarize-ledger map-rebuild: --storage %q: want %q or %q\n", *kind, storagePOSIX, storageMySQL) // errUsage is not printed
	return errUsage
}

// parseFlagsOnly parses a subcommand's args, which take flags only:
// -h is flag.ErrHelp, a bad flag or a positional argument errUsage (after
// the usage), as for map-rebuild and migrate-index.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
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
	return nil
}
