package posix

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/notarize/docker-notarize/internal/pebblestore"
	bolt "go.etcd.io/bbolt"
)

// OldSuffix is appended to a bbolt file that a migration replaced
// (index.db.bbolt-old): kept for the operator to delete once the migrated
// ledger serves.
const OldSuffix = ".bbolt-old"

// migrateBatchBytes is how many bytes of rows one pebble batch of a
// migration holds.
var migrateBatchBytes = 32 << 20

// migrateBatchHook, when set (tests), runs after each committed batch of a
// migration with the rows copied so far; an error interrupts it.
var migrateBatchHook func(rows int) error

// MigrateResult is what a migration of one bbolt file did.
type MigrateResult struct {
	From, To string        // the bbolt file and the pebble directory
	Rows     int           // rows copied (0: nothing to do)
	Took     time.Duration // how long the copy, check and renames took
	Done     bool          // false: there was nothing to migrate
}

// MigrateIndex moves the digest index of the stopped ledger whose data
// directory is dir from bbolt (IndexFile) to pebble (IndexDir): see
// MigrateBolt. The bbolt file must be of this binary's format (a ledger of
// this version has opened it). Only the bbolt → pebble direction exists.
func MigrateIndex(ctx context.Context, dir string, logger *slog.Logger) (MigrateResult, error) {
	prefixes := make(map[string]byte, len(pebblePrefixes))
	for _, p := range pebblePrefixes {
		prefixes[string(p.bucket)] = p.prefix
	}
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("not a digest index: no meta bucket")
		}
		if v := meta.Get(formatKey); len(v) != 8 || binary.BigEndian.Uint64(v) != boltFormat {
			return fmt.Errorf("the index is not of format %d: start the ledger once with this notarize-ledger (it upgrades the index), stop it, and migrate then", boltFormat)
		}
		return nil
	}
	// The format key is pebble's own, not bbolt's.
	fixup := func(b *pebble.Batch) error { return b.Set(pkey(pfxMeta, formatKey), be64(pebbleFormat), nil) }
	return MigrateBolt(ctx, filepath.Join(dir, IndexFile), filepath.Join(dir, IndexDir), prefixes, check, fixup, logger)
}

// MigrateBolt copies every row of the bbolt database at src into a new
// pebble database at dst, each bucket's keys under its one-byte prefix
// (prefixes: bucket name → prefix; a bucket not named is an error). check,
// if set, vets src first; fixup, if set, adds rows after the copy.
//
// It holds src's bbolt lock throughout, exclusively (src is opened
// read-write, though only read), so that neither a ledger nor a second
// migration can start on it meanwhile (two migrations would share
// dst+".tmp"), and fails at once if either holds it. It refuses if
// src+OldSuffix exists (an earlier migration's way back, which the rename
// would replace). It writes into dst+".tmp"
// (removed first: an interrupted migration starts over), in batches of
// migrateBatchBytes, then flushes and syncs it, checks that each prefix
// holds as many rows as its bucket, renames it to dst, and only then
// renames src aside (src+OldSuffix). If dst already exists beside src (a
// migration interrupted between its two renames), it only renames src
// aside. src missing: nothing to do.
func MigrateBolt(ctx context.Context, src, dst string, prefixes map[string]byte, check func(*bolt.Tx) error, fixup func(*pebble.Batch) error, logger *slog.Logger) (MigrateResult, error) {
	return MigrateBoltWith(ctx, src, dst, prefixes, check, fixup, nil, logger)
}

// MigrateBoltWith is MigrateBolt writing dst with the pebble options opts
// (the store's own: the map's are not the index's; nil: PebbleOptions).
func MigrateBoltWith(ctx context.Context, src, dst string, prefixes map[string]byte, check func(*bolt.Tx) error, fixup func(*pebble.Batch) error, opts *pebble.Options, logger *slog.Logger) (MigrateResult, error) {
	if logger == nil {
		logger = slog.Default()
	}
	start := time.Now()
	res := MigrateResult{From: src, To: dst}
	if ok, err := exists(src); err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("migrate %s: %w", src, err)
		}
		return res, err
	}
	if err := oldFree(src); err != nil {
		return res, err
	}
	db, err := bolt.Open(src, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return res, fmt.Errorf("migrate %s: %w (a running ledger or another migration); stop it first", src, ErrInUse)
		}
		return res, fmt.Errorf("migrate %s: %w", src, err)
	}
	defer db.Close()
	if done, err := exists(dst); err != nil {
		return res, fmt.Errorf("migrate %s: %w", src, err)
	} else if done {
		logger.Info("the migration to pebble was complete; moving the bbolt file aside", slog.String("path", dst))
		return finishMigration(src, dst, res, start)
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return res, fmt.Errorf("migrate %s: %w", src, err)
	}
	if opts == nil {
		opts = PebbleOptions(64 << 20)
	}
	rows, err := copyBolt(ctx, db, tmp, prefixes, check, fixup, opts, logger)
	if err != nil {
		return res, fmt.Errorf("migrate %s: %w (%s left as it was; the next migration starts over)", src, err, src)
	}
	res.Rows = rows
	if err := os.Rename(tmp, dst); err != nil {
		return res, fmt.Errorf("migrate %s: %w", src, err)
	}
	return finishMigration(src, dst, res, start)
}

// ErrInUse is the error of a migration whose bbolt file a running ledger
// or another migration holds.
var ErrInUse = errors.New("in use")

// ErrOldExists is the error of a migration that would replace the bbolt
// file an earlier migration moved aside (src+OldSuffix).
var ErrOldExists = errors.New("an earlier migration's bbolt file is in the way")

// oldFree returns ErrOldExists if src+OldSuffix exists.
func oldFree(src string) error {
	old := src + OldSuffix
	if ok, err := exists(old); err != nil {
		return fmt.Errorf("migrate %s: %w", src, err)
	} else if ok {
		return fmt.Errorf("migrate %s: %w: %s exists (kept by an earlier migration); move or delete it, then run the migration again", src, ErrOldExists, old)
	}
	return nil
}

// finishMigration syncs dst's directory entry, then renames src aside
// (never over an existing src+OldSuffix).
func finishMigration(src, dst string, res MigrateResult, start time.Time) (MigrateResult, error) {
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return res, fmt.Errorf("migrate %s: %w", src, err)
	}
	if err := oldFree(src); err != nil {
		return res, err
	}
	if err := os.Rename(src, src+OldSuffix); err != nil {
		return res, fmt.Errorf("migrate %s: %w", src, err)
	}
	if err := syncDir(filepath.Dir(src)); err != nil {
		return res, fmt.Errorf("migrate %s: %w", src, err)
	}
	res.Done, res.Took = true, time.Since(start)
	return res, nil
}

// syncDir fsyncs the directory dir (its entries: a rename).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// copyBolt copies db's rows into a new pebble database at dir, synced and
// closed, and returns how many rows it copied.
func copyBolt(ctx context.Context, db *bolt.DB, dir string, prefixes map[string]byte, check func(*bolt.Tx) error, fixup func(*pebble.Batch) error, opts *pebble.Options, logger *slog.Logger) (int, error) {
	opts.DisableWAL = true // the copy is flushed and synced as a whole, or started over
	ps, err := pebblestore.Open(dir, "migration copy", opts, logger)
	if err != nil {
		return 0, err
	}
	pdb := ps.DB() // this copy's alone until it is renamed into place
	counts := map[byte]int{}
	rows := 0
	err = db.View(func(tx *bolt.Tx) error {
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
		b := pdb.NewBatch()
		commit := func() error {
			err := b.Commit(pebble.NoSync)
			_ = b.Close()
			b = pdb.NewBatch()
			if err == nil && migrateBatchHook != nil {
				err = migrateBatchHook(rows)
			}
			return err
		}
		err := tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			p, ok := prefixes[string(name)]
			if !ok {
				return fmt.Errorf("unknown bucket %q", name)
			}
			key := []byte{p}
			return bk.ForEach(func(k, v []byte) error {
				if v == nil {
					return fmt.Errorf("nested bucket %q in %q", k, name)
				}
				key = append(key[:1], k...)
				if err := b.Set(key, v, nil); err != nil {
					return err
				}
				counts[p]++
				rows++
				if b.Len() >= migrateBatchBytes {
					if err := ctx.Err(); err != nil {
						return err
					}
					return commit()
				}
				return nil
			})
		})
		if err == nil && fixup != nil {
			err = fixup(b)
		}
		if err == nil {
			err = commit()
		}
		return errors.Join(err, b.Close())
	})
	if err == nil {
		err = pdb.Flush()
	}
	if err == nil {
		// Settle the store (L0 into the lower levels) now rather than in
		// the ledger's first minutes of service.
		err = pdb.Compact(ctx, []byte{0}, []byte{0xff}, true)
	}
	if err == nil {
		err = verifyCounts(pdb, counts)
	}
	if cerr := ps.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return rows, err
}

// verifyCounts checks that each prefix of db holds counts[prefix] keys.
func verifyCounts(db *pebble.DB, counts map[byte]int) error {
	for p, want := range counts {
		it, err := prefixIter(db, []byte{p})
		if err != nil {
			return err
		}
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		if err := it.Close(); err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("verify: prefix %q holds %d rows after the copy, want %d", p, n, want)
		}
	}
	return nil
}
