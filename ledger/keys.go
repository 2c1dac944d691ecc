package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/notarize/docker-notarize/internal/atomicfile"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// Files inside Config.DataDir that operators and tests may read.
const (
	// KeyFile holds the note signer key ("PRIVATE+KEY+…"), mode 0600.
	KeyFile = "ledger.key"
	// PubFile holds the note verifier key, the string clients pin.
	PubFile = "ledger.pub"
)

// Other files and directories inside Config.DataDir.
const (
	keyFileName    = KeyFile
	pubFileName    = PubFile
	originFileName = "origin"   // the persisted checkpoint origin
	logDirName     = "log"      // Tessera POSIX storage
	indexFileName  = "index.db" // bbolt: antispam identities and digest index
)

// ErrIdentityMismatch is returned (wrapped) by New when the configured
// origin or note key disagrees with what the data directory already holds.
var ErrIdentityMismatch = errors.New("ledger identity mismatch")

// identity is the ledger's checkpoint signing identity.
type identity struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string // verifier key string, as in ledger.pub
}

// loadIdentity loads (or, on first start, creates) the note key and origin
// kept in dir, checks them against cfg and against an existing checkpoint,
// and writes ledger.pub and origin.
func loadIdentity(dir string, cfg Config) (*identity, error) {
	persisted, err := readTrimmed(filepath.Join(dir, originFileName))
	if err != nil {
		return nil, err
	}
	skey := cfg.NoteSignerKey
	if skey == "" {
		skey, err = readTrimmed(filepath.Join(dir, keyFileName))
		if err != nil {
			return nil, err
		}
	}
	if skey == "" {
		skey, err = generateSignerKey(firstNonEmpty(cfg.Origin, persisted))
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(filepath.Join(dir, keyFileName), []byte(skey+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	id, err := newIdentity(skey, cfg.Origin)
	if err != nil {
		return nil, err
	}
	origin, vkey := id.signer.Name(), id.vkey
	if persisted != "" && persisted != origin {
		return nil, fmt.Errorf("%w: %s holds origin %q, but the note key is named %q", ErrIdentityMismatch, filepath.Join(dir, originFileName), persisted, origin)
	}
	// A log that exists must have been signed by this key under this origin:
	// anything else would hand clients a checkpoint they cannot chain to.
	cpPath := filepath.Join(dir, logDirName, layout.CheckpointPath)
	if cp, err := os.ReadFile(cpPath); err == nil {
		if err := id.checkExisting(cp, cpPath); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	if persisted == "" {
		if err := atomicfile.Write(filepath.Join(dir, originFileName), []byte(origin+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	if old, err := readTrimmed(filepath.Join(dir, pubFileName)); err != nil || old != vkey {
		if err := atomicfile.Write(filepath.Join(dir, pubFileName), []byte(vkey+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// newIdentity opens the note signer key skey and checks that its name is
// origin (when origin is not empty).
func newIdentity(skey, origin string) (*identity, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("note signer key: %w", err)
	}
	if origin != "" && origin != signer.Name() {
		return nil, fmt.Errorf("%w: configured origin %q, but the note key is named %q", ErrIdentityMismatch, origin, signer.Name())
	}
	vkey, err := verifierKeyOf(skey)
	if err != nil {
		return nil, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("note verifier key: %w", err)
	}
	if verifier.KeyHash() != signer.KeyHash() {
		return nil, errors.New("note signer key: key hash does not match the key")
	}
	return &identity{signer: signer, verifier: verifier, vkey: vkey}, nil
}

// checkExisting reports ErrIdentityMismatch unless the log's published
// checkpoint cp (read from where) verifies under this identity.
func (id *identity) checkExisting(cp []byte, where string) error {
	if _, _, _, err := log.ParseCheckpoint(cp, id.signer.Name(), id.verifier); err != nil {
		return fmt.Errorf("%w: the existing checkpoint %s does not verify under key %q: %v", ErrIdentityMismatch, where, id.vkey, err)
	}
	return nil
}

// NewSignerKey generates a checkpoint signing key for a log named origin:
// a sumdb/note Ed25519 signer key ("PRIVATE+KEY+…") and its verifier key,
// the string clients pin. Every instance of a ledger on shared storage
// signs with the same key.
func NewSignerKey(origin string) (signerKey, verifierKey string, err error) {
	if !validOrigin(origin) {
		return "", "", fmt.Errorf("new signer key: origin %q: must be non-empty UTF-8 without spaces or '+'", origin)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", "", fmt.Errorf("new signer key: %w", err)
	}
	return skey, vkey, nil
}

// verifierKeyOf derives the verifier key string from an Ed25519 note signer
// key "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>".
func verifierKeyOf(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5) // base64 key data may hold "+"
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("note signer key: malformed")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("note signer key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[2], pub)
	if err != nil {
		return "", fmt.Errorf("note verifier key: %w", err)
	}
	return vkey, nil
}

// generateSignerKey generates a note signer key named origin or, when
// origin is empty, named by defaultOrigin after its own public key: every
// ledger started without --origin gets an origin of its own, so that a reset
// or a second ledger on the same host is a different log to its clients,
// not the same log under another key.
func generateSignerKey(origin string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate note key: %w", err)
	}
	if origin == "" {
		origin = defaultOrigin(pub)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return "", fmt.Errorf("generate note key: %w", err)
	}
	// vkey is "<name>+<hash>+<key>": the signer key shares its name and hash.
	parts := strings.SplitN(vkey, "+", 3) // base64 key data may hold "+"
	if len(parts) != 3 {
		return "", fmt.Errorf("generate note key: unexpected verifier key %q", vkey)
	}
	seed := append([]byte{1}, priv.Seed()...) // 1: the Ed25519 algorithm
	return "PRIVATE+KEY+" + origin + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(seed), nil
}

// defaultOrigin is "<hostname>/notarize-ledger/<first 8 hex digits of the
// SHA-256 of the checkpoint public key pub>", with "localhost" when the host
// name is unknown or not usable in an origin.
func defaultOrigin(pub ed25519.PublicKey) string {
	h, err := os.Hostname()
	if err != nil || !validOrigin(h) || strings.Contains(h, "/") {
		h = "localhost"
	}
	sum := sha256.Sum256(pub)
	return h + "/notarize-ledger/" + hex.EncodeToString(sum[:4])
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// readTrimmed returns the file's content without surrounding space, or ""
// when the file does not exist.
func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
