package plugin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/notarize/docker-notarize/internal/atomicfile"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// File name suffixes in the key store.
const (
	privateKeySuffix   = ".key"
	publicKeySuffix    = ".pub"
	referenceKeySuffix = ".ref"
)

// maxKeyFileSize bounds key files read from disk.
const maxKeyFileSize = 64 << 10

// Errors of the key store; callers branch on them with errors.Is.
var (
	// ErrKeyExists is returned when generating a key whose name is taken.
	ErrKeyExists = errors.New("key already exists")
	// ErrKeyNotFound is returned for a name the store does not hold.
	ErrKeyNotFound = errors.New("key not found")
	// ErrBadKeyName is returned for a name that is not a valid key name.
	ErrBadKeyName = errors.New("bad key name")
	// ErrKeyNotEncrypted is returned for a private key file that is not
	// password-encrypted.
	ErrKeyNotEncrypted = errors.New("private key is not encrypted")
)

var keyNameRE = notarize.NameRule{Max: 64, Extra: "_.-"} // ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$

// ValidateKeyName checks name is 1–64 characters of letters, digits, '.', '_'
// and '-', starting with a letter or digit. Such a name cannot escape the
// store directory.
func ValidateKeyName(name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("%w %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadKeyName, name)
	}
	return nil
}

// KeyStore keeps keys in one directory. Every key has NAME.pub (the public
// key, PEM). A key the plugin holds has NAME.key (the private key, encrypted
// PEM "ENCRYPTED SIGSTORE PRIVATE KEY", mode 0600); a key held by a KMS or an
// HSM has NAME.ref instead (a KeyReference: its provider and URI, no secret);
// an imported teammate's key has only NAME.pub. It never overwrites a key.
type KeyStore struct {
	// Dir is the store directory, NOTARIZE_HOME/keys.
	Dir string
}

// NewKeyStore returns the key store under the notarize home directory.
func NewKeyStore(home string) KeyStore {
	return KeyStore{Dir: filepath.Join(home, "keys")}
}

// Key is a public key known by name: a store entry or a file given by path.
type Key struct {
	// Name is the store name, or the file's base name without extension.
	Name string
	// KeyID is the hex SHA-256 of the DER SubjectPublicKeyInfo (notarize.KeyID).
	KeyID string
	// Path is the public key file.
	Path string
	// PublicKey is the parsed key.
	PublicKey crypto.PublicKey
	// PEM is the public key file's content.
	PEM []byte
	// Provider says who holds the private key: "file" (NAME.key), a KMS or
	// HSM provider (awskms, pkcs11, …), or "" when the store has only the
	// public key (imported) or the key was given by path.
	Provider string
}

// ProviderFile is Key.Provider of a key whose encrypted private key is in the
// store.
const ProviderFile = "file"

// KeyReference is the content of NAME.ref: where a key held outside the store
// lives. It holds no secret (a PKCS#11 pin-value is removed before it is
// written).
type KeyReference struct {
	// Provider is the URI's scheme: awskms, gcpkms, azurekms, hashivault or
	// pkcs11.
	Provider string `json:"provider"`
	// URI names the key in its provider: awskms://[ENDPOINT]/alias/NAME,
	// pkcs11:token=T;object=O?module-path=…, …
	URI string `json:"uri"`
}

// Generate creates an ECDSA P-256 key pair named name, the private key
// encrypted under password, and writes it to the store. It refuses to
// overwrite either file of an existing key (ErrKeyExists).
func (s KeyStore) Generate(name string, password []byte) (Key, error) {
	if err := ValidateKeyName(name); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	if password == nil {
		// A nil password would make cryptoutils write the key unencrypted.
		password = []byte{}
	}
	privPath, pubPath := s.paths(name)
	for _, p := range []string{privPath, pubPath, s.refPath(name)} {
		if _, err := os.Lstat(p); err == nil {
			return Key{}, fmt.Errorf("generate key %q: %w: %s", name, ErrKeyExists, p)
		}
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Key{}, fmt.Errorf("generate key %q: %w", name, err)
	}
	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return Key{}, fmt.Errorf("generate key %q: %w", name, err)
	}
	if err := createNew(privPath, privPEM, 0o600); err != nil {
		return Key{}, fmt.Errorf("generate key %q: %w", name, err)
	}
	if err := createNew(pubPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(privPath)
		return Key{}, fmt.Errorf("generate key %q: %w", name, err)
	}
	k, err := parsePublicKey(name, pubPath, pubPEM)
	k.Provider = ProviderFile
	return k, err
}

// List returns the store's public keys sorted by name. A missing store is
// empty.
func (s KeyStore) List() ([]Key, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var keys []Key
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), publicKeySuffix)
		if !ok || !e.Type().IsRegular() || ValidateKeyName(name) != nil {
			continue
		}
		k, err := s.Public(name)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	return keys, nil
}

// SigningKeys returns the store's keys that can sign (an encrypted private
// key, or a key held by a KMS or an HSM), sorted by name: List without the
// imported public keys.
func (s KeyStore) SigningKeys() ([]Key, error) {
	keys, err := s.List()
	if err != nil {
		return nil, err
	}
	out := keys[:0]
	for _, k := range keys {
		if k.Provider != "" {
			out = append(out, k)
		}
	}
	return out, nil
}

// Public returns the public key of the store entry name.
func (s KeyStore) Public(name string) (Key, error) {
	if err := ValidateKeyName(name); err != nil {
		return Key{}, err
	}
	_, pubPath := s.paths(name)
	b, err := readKeyFile(pubPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Key{}, fmt.Errorf("%w: no key %q in %s", ErrKeyNotFound, name, s.Dir)
	}
	if err != nil {
		return Key{}, err
	}
	k, err := parsePublicKey(name, pubPath, b)
	if err != nil {
		return Key{}, err
	}
	k.Provider, err = s.provider(name)
	return k, err
}

// provider returns who holds the private key of the store entry name (see
// Key.Provider).
func (s KeyStore) provider(name string) (string, error) {
	privPath, _ := s.paths(name)
	if _, err := os.Lstat(privPath); err == nil {
		return ProviderFile, nil
	}
	ref, ok, err := s.Reference(name)
	if err != nil || !ok {
		return "", err
	}
	return ref.Provider, nil
}

// Reference returns the KeyReference of the store entry name, and false when
// the key is not held by a KMS or an HSM.
func (s KeyStore) Reference(name string) (KeyReference, bool, error) {
	if err := ValidateKeyName(name); err != nil {
		return KeyReference{}, false, err
	}
	b, err := readKeyFile(s.refPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return KeyReference{}, false, nil
	}
	if err != nil {
		return KeyReference{}, false, err
	}
	var ref KeyReference
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ref); err != nil {
		return KeyReference{}, false, fmt.Errorf("key %s: reference %s: %w", name, s.refPath(name), err)
	}
	if ref.Provider == "" || ref.URI == "" {
		return KeyReference{}, false, fmt.Errorf("key %s: reference %s: provider and uri are required", name, s.refPath(name))
	}
	return ref, true, nil
}

// AddReference records a key held by a KMS or an HSM under name: its public
// key (NAME.pub) and its reference (NAME.ref, with any PKCS#11 pin-value
// removed). It refuses a name that is taken (ErrKeyExists) and a public key
// already stored under another name (ErrKeyStoredAs).
func (s KeyStore) AddReference(name string, ref KeyReference, pub crypto.PublicKey) (Key, error) {
	if err := ValidateKeyName(name); err != nil {
		return Key{}, fmt.Errorf("add key: %w", err)
	}
	ref.URI = redactKeyURI(ref.URI)
	pubPEM, err := publicKeyPEM(pub)
	if err != nil {
		return Key{}, fmt.Errorf("add key %q: %w", name, err)
	}
	refJSON, err := json.MarshalIndent(ref, "", "  ")
	if err != nil {
		return Key{}, fmt.Errorf("add key %q: %w", name, err)
	}
	if err := s.checkNew(name, pub); err != nil {
		return Key{}, fmt.Errorf("add key %q: %w", name, err)
	}
	_, pubPath := s.paths(name)
	if err := createNew(s.refPath(name), append(refJSON, '\n'), 0o600); err != nil {
		return Key{}, fmt.Errorf("add key %q: %w", name, err)
	}
	if err := createNew(pubPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(s.refPath(name))
		return Key{}, fmt.Errorf("add key %q: %w", name, err)
	}
	k, err := parsePublicKey(name, pubPath, pubPEM)
	k.Provider = ref.Provider
	return k, err
}

// ErrKeyStoredAs is returned when a key is added that the store already holds
// under another name; the message names it.
var ErrKeyStoredAs = errors.New("key already in the key store under another name")

// checkNew refuses a name that is taken, by any of a key's files, and a public
// key the store already holds under another name.
func (s KeyStore) checkNew(name string, pub crypto.PublicKey) error {
	privPath, pubPath := s.paths(name)
	for _, p := range []string{privPath, pubPath, s.refPath(name)} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrKeyExists, p)
		}
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		return err
	}
	keys, err := s.List()
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.KeyID == id {
			return fmt.Errorf("%w: %q (key ID %s)", ErrKeyStoredAs, k.Name, id)
		}
	}
	return os.MkdirAll(s.Dir, 0o700)
}

// SignerSource is a signing key resolved by name or path, not yet opened:
// resolving reads only the key store (errors are configuration errors);
// opening asks for a password or calls a KMS or HSM.
type SignerSource struct {
	// Name is the signer's display name: the store name, or the file's
	// base name without extension.
	Name string
	// Provider is who holds the private key: ProviderFile, or a KMS or HSM
	// provider.
	Provider string

	pemBytes []byte       // an encrypted private key (ProviderFile)
	ref      KeyReference // a key held elsewhere
	recorded Key          // its public key as the store recorded it
}

// ResolveSigner finds the signing key named by ref: a path with a separator
// to an encrypted private key file, or a store name. A store entry with only
// a public key (imported) is ErrPublicOnly.
func (s KeyStore) ResolveSigner(ref string) (*SignerSource, error) {
	if !isPath(ref) {
		if err := ValidateKeyName(ref); err != nil {
			return nil, err
		}
		kref, ok, err := s.Reference(ref)
		if err != nil {
			return nil, err
		}
		if ok {
			recorded, err := s.Public(ref)
			if err != nil {
				return nil, err
			}
			return &SignerSource{Name: ref, Provider: kref.Provider, ref: kref, recorded: recorded}, nil
		}
		privPath, _ := s.paths(ref)
		if _, err := os.Lstat(privPath); errors.Is(err, fs.ErrNotExist) {
			if _, perr := s.Public(ref); perr == nil {
				return nil, fmt.Errorf("key %s: %w", ref, ErrPublicOnly)
			}
		}
	}
	pemBytes, name, err := s.ResolvePrivate(ref)
	if err != nil {
		return nil, err
	}
	return &SignerSource{Name: name, Provider: ProviderFile, pemBytes: pemBytes}, nil
}

// Open returns the key's signer. An encrypted key is decrypted with the
// password password returns (asked only for such keys). A key held by a KMS
// or an HSM is opened through its provider, must still be the key the store
// recorded (ErrKeyProviderMismatch), and every signature it makes is checked
// against that key; lookupEnv gives the PKCS#11 module and PIN variables.
// Errors name the key (and the provider: KeyProviderError).
func (src *SignerSource) Open(ctx context.Context, password func() ([]byte, error), lookupEnv func(string) (string, bool)) (signature.Signer, error) {
	if src.Provider != ProviderFile {
		return openReferenced(ctx, src.Name, src.ref, src.recorded, lookupEnv)
	}
	pw, err := password()
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", src.Name, err)
	}
	sig, err := LoadSigner(src.pemBytes, pw)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", src.Name, err)
	}
	return sig, nil
}

// ResolvePublic returns the public key named by ref: a path (anything with a
// path separator, e.g. ./alice.pub) to a PEM public key file, else the name of
// a store entry.
func (s KeyStore) ResolvePublic(ref string) (Key, error) {
	if !isPath(ref) {
		k, err := s.Public(ref)
		if errors.Is(err, ErrKeyNotFound) {
			return Key{}, fmt.Errorf("%w (for a file, give a path such as ./%s)", err, ref)
		}
		return k, err
	}
	b, err := readKeyFile(ref)
	if err != nil {
		return Key{}, err
	}
	return parsePublicKey(nameFromPath(ref), ref, b)
}

// ResolvePrivate returns the encrypted private key PEM named by ref (a path
// with a separator, or a store name) and the signer's display name.
func (s KeyStore) ResolvePrivate(ref string) (pemBytes []byte, name string, err error) {
	path, name := ref, nameFromPath(ref)
	if !isPath(ref) {
		if err := ValidateKeyName(ref); err != nil {
			return nil, "", err
		}
		path, _ = s.paths(ref)
		name = ref
	}
	b, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) && !isPath(ref) {
		if kref, ok, _ := s.Reference(ref); ok {
			return nil, "", fmt.Errorf("key %s is held by %s (%s): open it with ResolveSigner", ref, kref.Provider, kref.URI)
		}
		if _, perr := s.Public(ref); perr == nil {
			return nil, "", fmt.Errorf("key %s: %w", ref, ErrPublicOnly)
		}
		return nil, "", fmt.Errorf("%w: no key %q in %s (for a file, give a path such as ./%s)", ErrKeyNotFound, ref, s.Dir, ref)
	}
	if err != nil {
		return nil, "", err
	}
	return b, name, nil
}

// LoadSigner decrypts an encrypted private key PEM ("ENCRYPTED SIGSTORE
// PRIVATE KEY", or cosign's equivalent) with password and returns a signer.
// Unencrypted keys are refused (ErrKeyNotEncrypted).
func LoadSigner(pemBytes, password []byte) (signature.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("load private key: not PEM")
	}
	switch block.Type {
	case string(cryptoutils.EncryptedSigstorePrivateKeyPEMType), "ENCRYPTED COSIGN PRIVATE KEY":
	default:
		return nil, fmt.Errorf("load private key: %w (PEM type %q)", ErrKeyNotEncrypted, block.Type)
	}
	if password == nil {
		password = []byte{}
	}
	priv, err := decryptPrivateKey(pemBytes, password)
	if err != nil {
		return nil, fmt.Errorf("load private key: wrong password or corrupt key: %w", err)
	}
	cs, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load private key: unsupported key type %T", priv)
	}
	s, err := signature.LoadSigner(priv, notarize.HashFor(cs.Public()))
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	return s, nil
}

// decryptPrivateKey decrypts an encrypted private key PEM. It is a variable
// only so that the package's tests can remember the keys they decrypted
// (TestMain): the scrypt that makes each password guess slow costs about
// 2 s of CPU a key under the race detector, and the package's tests took
// 690 s instead of 261 s when every command paid it.
var decryptPrivateKey = func(pemBytes, password []byte) (crypto.PrivateKey, error) {
	return cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.StaticPasswordFunc(password))
}

func (s KeyStore) paths(name string) (priv, pub string) {
	base := filepath.Join(s.Dir, name)
	return base + privateKeySuffix, base + publicKeySuffix
}

func (s KeyStore) refPath(name string) string {
	return filepath.Join(s.Dir, name+referenceKeySuffix)
}

func parsePublicKey(name, path string, pemBytes []byte) (Key, error) {
	pub, err := notarize.ParsePublicKey(pemBytes)
	if err != nil {
		return Key{}, fmt.Errorf("public key %s: %w", path, err)
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		return Key{}, fmt.Errorf("public key %s: %w", path, err)
	}
	return Key{Name: name, KeyID: id, Path: path, PublicKey: pub, PEM: pemBytes}, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("read key %s: larger than %d bytes", path, maxKeyFileSize)
	}
	return b, nil
}

// createNew writes data to a new file at path with mode perm, atomically
// (nobody sees a partial key file), failing with ErrKeyExists if path exists.
func createNew(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.Create(path, data, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrKeyExists, path)
		}
		return err
	}
	return nil
}

func isPath(ref string) bool {
	return strings.ContainsRune(ref, '/') || strings.ContainsRune(ref, filepath.Separator)
}

func nameFromPath(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}
