package ledger

import (
	"crypto"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"

	"github.com/notarize/docker-notarize/internal/boundedfile"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ui"
	"github.com/notarize/docker-notarize/notarize"
)

// MaxSignersFileSize bounds a --signers file (either form).
const MaxSignersFileSize = notarize.MaxSignersFileSize

// yamlSigners finds the top-level key of a YAML signers file.
var yamlSigners = regexp.MustCompile(`(?m)^signers[ \t]*:`)

// maxSignerKeyFile bounds a public key file a signers file names.
const maxSignerKeyFile = 64 << 10

// Signers is what a --signers file enrols: the keys allowed to write and,
// from the YAML form, each key's identity.
type Signers struct {
	// Keys are the enrolled writers' public keys (Config.Signers).
	Keys []crypto.PublicKey
	// Identities maps each key ID to the identity it is enrolled with
	// (Config.Identities); empty for a file of PEM keys.
	Identities map[string]notarize.Identity
}

// LoadSigners parses an enrolled signers file, in either form:
//
//   - PEM: one or more "PUBLIC KEY" blocks (ParseSigners); keys without
//     identities.
//   - YAML (notarize.SignersFile): signers: {NAME: {email: …, keys: […]}},
//     each key inline PEM or a file path, relative to dir.
//
// A file with a line starting "signers:" is read as YAML, any other as
// PEM (text around PEM blocks, such as comments, is ignored).
func LoadSigners(b []byte, dir string) (Signers, error) {
	if !yamlSigners.Match(b) {
		keys, err := ParseSigners(b)
		return Signers{Keys: keys}, err
	}
	f, err := notarize.ParseSignersFile(b)
	if err != nil {
		return Signers{}, fmt.Errorf("parse signers: %w", err)
	}
	var out Signers
	ids := map[string][]string{}
	for _, name := range f.Names() {
		for _, ref := range f.Signers[name].Keys {
			pub, id, err := resolveSignerKey(ref, dir)
			if err != nil {
				return Signers{}, fmt.Errorf("parse signers: signer %q: %w", name, err)
			}
			out.Keys = append(out.Keys, pub)
			ids[name] = append(ids[name], id)
		}
	}
	if out.Identities, err = f.IdentitiesByKey(ids); err != nil {
		return Signers{}, fmt.Errorf("parse signers: %w", err)
	}
	return out, nil
}

// resolveSignerKey reads one key reference of a signers file: inline PEM,
// or a PEM file (relative to dir).
func resolveSignerKey(ref, dir string) (crypto.PublicKey, string, error) {
	pemBytes := []byte(ref)
	if !notarize.IsInlineKey(ref) {
		p := ref
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		var err error
		if pemBytes, err = boundedfile.Read(p, maxSignerKeyFile); err != nil {
			return nil, "", fmt.Errorf("key %s: %w", ref, err)
		}
	}
	pub, err := notarize.ParsePublicKey(pemBytes)
	if err != nil {
		return nil, "", fmt.Errorf("key %s: %w", truncate(ref, 80), err)
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		return nil, "", fmt.Errorf("key %s: %w", truncate(ref, 80), err)
	}
	return pub, id, nil
}

// checkIdentity refuses a statement whose claimed identity (name, email)
// is not the identity its key is enrolled with, when the ledger enrols
// identities (Config.Identities): an enrolled key cannot claim to be
// another signer. A key without an enrolled identity is refused too
// (ErrNotEnrolled): with identities, every writer has one. Without
// identities nothing is checked.
func (l *Ledger) checkIdentity(v *notarize.Verified) error {
	if len(l.cfg.Identities) == 0 {
		return nil
	}
	enrolled, ok := l.cfg.Identities[v.KeyID]
	if !ok {
		return fmt.Errorf("%w: key %s has no enrolled identity", ErrNotEnrolled, v.KeyID)
	}
	return notarize.CheckClaim(v.KeyID, v.Statement.Claimed(), enrolled)
}

// enrolledIdentity is the page's view of keyID's enrolled identity, nil
// when it has none.
func (l *Ledger) enrolledIdentity(keyID string) *ui.Identity {
	id, ok := l.EnrolledIdentity(keyID)
	if !ok {
		return nil
	}
	return &ui.Identity{Name: id.Name, Email: id.Email}
}

// serveKeyIdentity handles GET /api/v1/keys/{keyid}/identity: the key's
// enrolled identity, or 404 when it has none.
func (l *Ledger) serveKeyIdentity(w http.ResponseWriter, r *http.Request) error {
	keyID := r.PathValue("keyid")
	if !isKeyID(keyID) {
		return fmt.Errorf("%w: key ID %q: want 64 lowercase hex characters", errBadRequest, truncate(keyID, 80))
	}
	id, ok := l.EnrolledIdentity(keyID)
	if !ok {
		return fmt.Errorf("%w: key %s has no enrolled identity", errNotFound, keyID)
	}
	return l.writeJSONHeld(w, r, api.KeyIdentity{KeyID: keyID, Name: id.Name, Email: id.Email})
}

// EnrolledIdentity returns the identity keyID is enrolled with
// (Config.Identities), and false when it has none.
func (l *Ledger) EnrolledIdentity(keyID string) (notarize.Identity, bool) {
	id, ok := l.cfg.Identities[keyID]
	return id, ok
}
