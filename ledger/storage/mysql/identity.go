package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// Rows of notarize_meta.
const (
	metaOrigin      = "origin"
	metaVerifierKey = "verifier_key"
)

// ErrNoSignerKey is returned (wrapped) by Identity without a signer key:
// instances sharing a database must sign with one key, which is made once
// (notarize-ledger keygen), never by an instance.
var ErrNoSignerKey = errors.New("mysql storage needs the shared checkpoint key (--key-file FILE or $NOTARIZE_LEDGER_SIGNER_KEY); make it once with `notarize-ledger keygen --origin NAME --out FILE`")

// Identity implements storage.Storage: it opens signerKey (required:
// ErrNoSignerKey) and checks it against the identity stored in the
// database, storing it there on first start. Two instances starting
// together with different keys cannot both win: the rows are inserted
// once, and every instance compares.
func (s *Storage) Identity(ctx context.Context, origin, signerKey string) (*storage.Identity, error) {
	id, err := s.identity(ctx, origin, signerKey)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: %w", s.where, err)
	}
	return id, nil
}

func (s *Storage) identity(ctx context.Context, origin, signerKey string) (*storage.Identity, error) {
	if signerKey == "" {
		return nil, ErrNoSignerKey
	}
	id, err := storage.NewIdentity(signerKey, origin)
	if err != nil {
		return nil, err
	}
	db := s.db
	want := map[string]string{metaOrigin: id.Origin(), metaVerifierKey: id.VerifierKey}
	if _, err := db.ExecContext(ctx, "INSERT IGNORE INTO `notarize_meta` (`name`, `value`) VALUES (?, ?), (?, ?)",
		metaOrigin, want[metaOrigin], metaVerifierKey, want[metaVerifierKey]); err != nil {
		return nil, fmt.Errorf("store identity: %w", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT `name`, `value` FROM `notarize_meta` WHERE `name` IN (?, ?)", metaOrigin, metaVerifierKey)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("read identity: %w", err)
		}
		got[name] = value
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if got[metaOrigin] != want[metaOrigin] {
		return nil, fmt.Errorf("%w: the database holds the log %q, but the checkpoint key is named %q", storage.ErrIdentityMismatch, got[metaOrigin], want[metaOrigin])
	}
	if got[metaVerifierKey] != want[metaVerifierKey] {
		return nil, fmt.Errorf("%w: the database's log is verified by %q, but this instance's checkpoint key is %q", storage.ErrIdentityMismatch, got[metaVerifierKey], want[metaVerifierKey])
	}
	var cp []byte
	switch err := db.QueryRowContext(ctx, "SELECT `note` FROM `Checkpoint` WHERE `id` = 0").Scan(&cp); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read checkpoint: %w", err)
	default:
		if err := id.CheckCheckpoint(cp, "in the database"); err != nil {
			return nil, err
		}
	}
	return id, nil
}
