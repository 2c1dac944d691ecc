package mysql

import (
	"context"
	"crypto"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// EnrollSigners implements storage.Storage: it replaces the enrolled
// signers stored in the database, which every instance follows.
func (s *Storage) EnrollSigners(ctx context.Context, keys []crypto.PublicKey) error {
	if err := enrollSigners(ctx, s.db, keys, s.log); err != nil {
		return fmt.Errorf("mysql %s: %w", s.where, err)
	}
	return nil
}

// Signers implements storage.Storage.
func (s *Storage) Signers(ctx context.Context) (storage.KeySet, error) {
	set, err := loadSigners(ctx, s.db)
	if err != nil {
		return nil, s.health.check(ctx, err)
	}
	return set, nil
}

// enrollSigners replaces the enrolled signers stored in the database.
func enrollSigners(ctx context.Context, db *sql.DB, keys []crypto.PublicKey, logger *slog.Logger) error {
	before, err := loadSigners(ctx, db)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("enroll signers: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "DELETE FROM `notarize_signer`"); err != nil {
		return fmt.Errorf("enroll signers: %w", err)
	}
	after := storage.KeySet{}
	for _, k := range keys {
		kid, err := notarize.KeyID(k)
		if err != nil {
			return fmt.Errorf("enroll signers: %w", err)
		}
		pemKey, err := cryptoutils.MarshalPublicKeyToPEM(k)
		if err != nil {
			return fmt.Errorf("enroll signers: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "REPLACE INTO `notarize_signer` (`key_id`, `public_key`) VALUES (?, ?)", kid, pemKey); err != nil {
			return fmt.Errorf("enroll signers: %w", err)
		}
		after[kid] = true
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("enroll signers: %w", err)
	}
	if !maps.Equal(before, after) {
		logger.WarnContext(ctx, "enrolled signers replaced in the database; every instance follows within "+storage.SignersRefresh.String(),
			slog.Int("before", len(before)), slog.Int("after", len(after)))
	}
	return nil
}

// loadSigners reads the enrolled signers' key IDs.
func loadSigners(ctx context.Context, db *sql.DB) (storage.KeySet, error) {
	rows, err := db.QueryContext(ctx, "SELECT `key_id` FROM `notarize_signer`")
	if err != nil {
		return nil, fmt.Errorf("read enrolled signers: %w", err)
	}
	set := storage.KeySet{}
	for rows.Next() {
		var kid string
		if err := rows.Scan(&kid); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("read enrolled signers: %w", err)
		}
		set[kid] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("read enrolled signers: %w", err)
	}
	return set, nil
}
