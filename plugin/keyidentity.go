package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/internal/atomicfile"
	"github.com/notarize/docker-notarize/notarize"
)

// identitySuffix is the file name suffix of a key's identity in the store.
const identitySuffix = ".id"

// ErrBadKeyIdentity is returned (wrapped) for an identity flag or an
// identity file that does not follow notarize's rules.
var ErrBadKeyIdentity = errors.New("bad key identity")

// Identity returns the identity the store records for the key name: the
// signer's display name and optional email that sign, untrust and
// unsupport put in their statements. A key without NAME.id (every key
// stored before identities, or generated without --email or
// --display-name) is known by its key name, without email.
func (s KeyStore) Identity(name string) (notarize.Identity, error) {
	if err := ValidateKeyName(name); err != nil {
		return notarize.Identity{}, err
	}
	b, err := readKeyFile(s.identityPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return notarize.Identity{Name: name}, nil
	}
	if err != nil {
		return notarize.Identity{}, fmt.Errorf("key %s: identity: %w", name, err)
	}
	var id notarize.Identity
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return notarize.Identity{}, fmt.Errorf("key %s: identity %s: %w: %v", name, s.identityPath(name), ErrBadKeyIdentity, err)
	}
	if err := id.Validate(); err != nil {
		return notarize.Identity{}, fmt.Errorf("key %s: identity %s: %w: %w", name, s.identityPath(name), ErrBadKeyIdentity, err)
	}
	return id, nil
}

// SetIdentity records the identity of the store's key name (NAME.id,
// written atomically). The key must exist; an identity it has is
// replaced, as it is not key material.
func (s KeyStore) SetIdentity(name string, id notarize.Identity) error {
	if err := ValidateKeyName(name); err != nil {
		return err
	}
	if err := id.Validate(); err != nil {
		return fmt.Errorf("key %s: %w: %w", name, ErrBadKeyIdentity, err)
	}
	if _, err := s.Public(name); err != nil {
		return fmt.Errorf("key %s: identity: %w", name, err)
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("key %s: identity: %w", name, err)
	}
	if err := atomicfile.Write(s.identityPath(name), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("key %s: identity: %w", name, err)
	}
	return nil
}

func (s KeyStore) identityPath(name string) string {
	return filepath.Join(s.Dir, name+identitySuffix)
}

// identityFlags are key generate's and key import's --display-name and
// --email.
type identityFlags struct {
	displayName string
	email       string
}

func addIdentityFlags(cmd *cobra.Command, f *identityFlags) {
	cmd.Flags().StringVar(&f.displayName, "display-name", "", "Signer's display name recorded in each statement (default: the key name)")
	cmd.Flags().StringVar(&f.email, "email", "", "Signer's email address recorded in each statement (a bare address: alice@example.com)")
}

// set reports whether either flag was given.
func (f identityFlags) set() bool { return f.displayName != "" || f.email != "" }

// identity returns the identity the flags give a key named keyName,
// checked: a usage error for a bad name or email.
func (f identityFlags) identity(keyName string) (notarize.Identity, error) {
	id := notarize.Identity{Name: f.displayName, Email: f.email}
	if id.Name == "" {
		id.Name = keyName
	}
	if err := id.Validate(); err != nil {
		return notarize.Identity{}, usageError(fmt.Errorf("%w: %w", ErrBadKeyIdentity, err))
	}
	return id, nil
}

// keyIdentities returns the identity of each of keys, by key name.
func keyIdentities(ks KeyStore, keys []Key) (map[string]notarize.Identity, error) {
	out := make(map[string]notarize.Identity, len(keys))
	for _, k := range keys {
		id, err := ks.Identity(k.Name)
		if err != nil {
			return nil, err
		}
		out[k.Name] = id
	}
	return out, nil
}

// formatIdentity is an identity as one line of text: NAME or NAME <EMAIL>,
// printable.
func formatIdentity(id notarize.Identity) string {
	s := printable(id.Name)
	if id.Email != "" {
		s += " <" + printable(id.Email) + ">"
	}
	return s
}
