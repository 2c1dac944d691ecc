package plugin

import (
	"crypto"
	"crypto/elliptic"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/notarize/docker-notarize/internal/atomicfile"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// File name suffixes in the key store.
const (
	privateKeySuffix = ".key"
	publicKeySuffix  = ".pub"
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

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidateKeyName checks name is 1–64 characters of letters, digits, '.', '_'
// and '-', starting with a letter or digit. Such a name cannot escape the
// store directory.
func ValidateKeyName(name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("%w %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadKeyName, name)
	}
	return nil
}

// KeyStore keeps signing keys in one directory: NAME.key (the private key,
// encrypted PEM "ENCRYPTED SIGSTORE PRIVATE KEY", mode 0600) and NAME.pub (the
// public key, PEM). It never overwrites a key.
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
	for _, p := range []string{privPath, pubPath} {
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
	return parsePublicKey(name, pubPath, pubPEM)
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
	return parsePublicKey(name, pubPath, b)
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
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.StaticPasswordFunc(password))
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

func (s KeyStore) paths(name string) (priv, pub string) {
	base := filepath.Join(s.Dir, name)
	return base + privateKeySuffix, base + publicKeySuffix
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
