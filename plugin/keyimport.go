//go:build !notarize_verifyonly

package plugin

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/notarize"
)

// ErrNotPublicKey is returned when key import is given anything but exactly
// one PEM public key: a private key (which must never be copied into
// another's store), a certificate, several keys, or stray bytes.
var ErrNotPublicKey = errors.New("not a PEM public key")

type keyImportOptions struct {
	root     *rootOptions
	name     string
	file     string
	identity identityFlags
}

func newKeyImportCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := keyImportOptions{root: root}
	cmd := &cobra.Command{
		Use:   "import NAME FILE",
		Short: "Add a teammate's public key (PEM) to the key store, to verify their statements",
		Long: `Add a teammate's public key to the key store under NAME, so that verify,
audit and inspect accept their statements (--signer NAME, or every key in the
store). FILE is a PEM public key, as 'docker notarize key export' prints it;
'-' reads it from stdin. A private key is refused: ask for the public half.
A name already taken, or a key already stored under another name, is refused
and named. --display-name and --email record who the key belongs to (your
word for it, as a policy's signers are): inspect shows it beside what the
statements claim.`,
		Example: `  docker notarize key import alice alice.pub
  docker notarize key import alice --display-name "Alice Example" --email alice@example.com alice.pub
  docker notarize key import ci - < ci.pub`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.name, opts.file = args[0], args[1]
			return runKeyImport(cmd.Context(), dockerCli, opts)
		},
	}
	addIdentityFlags(cmd, &opts.identity)
	return cmd
}

func runKeyImport(_ context.Context, dockerCli stdio, opts keyImportOptions) error {
	if err := ValidateKeyName(opts.name); err != nil {
		return usageError(fmt.Errorf("import key: %w", err))
	}
	ident, err := opts.identity.identity(opts.name)
	if err != nil {
		return err
	}
	var b []byte
	if opts.file == "-" {
		b, err = readLimited(dockerCli.In(), "stdin")
	} else {
		b, err = readKeyFile(opts.file)
	}
	if err != nil {
		return usageError(fmt.Errorf("import key %s: %w", opts.name, err))
	}
	k, err := opts.root.keyStore().Import(opts.name, b)
	if errors.Is(err, ErrNotPublicKey) {
		return usageError(fmt.Errorf("import key %s from %s: %w", opts.name, opts.file, err))
	}
	if err != nil {
		return err
	}
	if _, err = fmt.Fprintf(dockerCli.Out(), "Imported key %s (public key only: it verifies, it cannot sign)\n  key ID:      %s\n  public key:  %s\n",
		k.Name, k.KeyID, k.Path); err != nil {
		return err
	}
	return recordIdentity(dockerCli.Out(), opts.root.keyStore(), k.Name, ident, opts.identity.set())
}

func readLimited(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes", what, maxKeyFileSize)
	}
	return b, nil
}

// Import adds a public key (one PEM "PUBLIC KEY" block of a kind notarize
// accepts) to the store as NAME.pub. It refuses a private key, anything else
// than exactly one public key (ErrNotPublicKey), a name that is taken
// (ErrKeyExists) and a key already stored under another name
// (ErrKeyStoredAs, naming it).
func (s KeyStore) Import(name string, pemBytes []byte) (Key, error) {
	if err := ValidateKeyName(name); err != nil {
		return Key{}, fmt.Errorf("import key: %w", err)
	}
	block, rest := pem.Decode(pemBytes)
	switch {
	case block == nil:
		return Key{}, fmt.Errorf("%w: no PEM block", ErrNotPublicKey)
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return Key{}, fmt.Errorf("%w: it is a private key (%s); import the public key ('docker notarize key export NAME' prints it), and keep the private key where it is", ErrNotPublicKey, block.Type)
	case block.Type != "PUBLIC KEY":
		return Key{}, fmt.Errorf("%w: PEM type %q, want \"PUBLIC KEY\"", ErrNotPublicKey, block.Type)
	case len(bytes.TrimSpace(rest)) != 0:
		if next, _ := pem.Decode(rest); next != nil && strings.Contains(next.Type, "PRIVATE KEY") {
			return Key{}, fmt.Errorf("%w: the file also holds a private key (%s)", ErrNotPublicKey, next.Type)
		}
		return Key{}, fmt.Errorf("%w: more than one PEM block, or bytes after the key", ErrNotPublicKey)
	}
	pub, err := notarize.ParsePublicKey(pem.EncodeToMemory(block))
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrNotPublicKey, err)
	}
	pubPEM, err := publicKeyPEM(pub)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrNotPublicKey, err)
	}
	if err := s.checkNew(name, pub); err != nil {
		return Key{}, fmt.Errorf("import key %q: %w", name, err)
	}
	_, pubPath := s.paths(name)
	if err := createNew(pubPath, pubPEM, 0o644); err != nil {
		return Key{}, fmt.Errorf("import key %q: %w", name, err)
	}
	return parsePublicKey(name, pubPath, pubPEM)
}
