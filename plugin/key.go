//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/notarize"
)

func newKeyCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage signing keys (in NOTARIZE_HOME/keys)",
		Example: `  docker notarize key generate --name release
  docker notarize key list
  docker notarize key export release > release.pub`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newKeyGenerateCmd(dockerCli, root),
		newKeyListCmd(dockerCli, root),
		newKeyExportCmd(dockerCli, root),
		newKeyImportCmd(dockerCli, root),
		newKeyIdentityCmd(dockerCli, root),
		newKeyRotateCmd(dockerCli, root),
		newKeyRevokeCmd(dockerCli, root), // keyrevoke.go
	)
	return cmd
}

type keyGenerateOptions struct {
	root     *rootOptions
	name     string
	external externalKeyFlags
	identity identityFlags
}

func newKeyGenerateCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := keyGenerateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "generate --name NAME",
		Short: "Generate an ECDSA P-256 signing key, encrypted with a password, or in a KMS or HSM",
		Long: `Generate an ECDSA P-256 signing key pair in the key store. The private key is
encrypted with a password taken from NOTARIZE_PASSWORD, or asked for (twice)
when stdin is a terminal. An existing key is never overwritten.

With --kms URI the key is created in a cloud KMS, or an existing one is
adopted (awskms://[ENDPOINT]/alias/NAME, awskms:///KEY-ID or ARN; credentials
from the provider's usual chain). With --pkcs11 URI (RFC 7512) it is
generated in, or adopted from, an HSM token; the PIN comes from the URI's
pin-value or pin-source, or NOTARIZE_PKCS11_PIN, and is never stored. Either
way the key store records only the public key and the URI, and the key signs
once to show it can. Then sign, untrust, unsupport and key export use it by
NAME like any other key.

The signer's identity, recorded in the key store and put in every statement
the key signs, is --display-name (default: the key name) and --email. A
ledger that enrols identities (notarize-ledger --signers) refuses
statements claiming another identity than the key's.`,
		Example: `  docker notarize key generate --name release
  NOTARIZE_PASSWORD=… docker notarize key generate --name ci-signer
  docker notarize key generate --name release --email release@example.com
  docker notarize key generate --name release --kms awskms:///alias/notarize-release
  NOTARIZE_PKCS11_PIN=… docker notarize key generate --name hsm \
    --pkcs11 'pkcs11:token=signing;object=release?module-path=/usr/lib/softhsm/libsofthsm2.so'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeyGenerate(cmd.Context(), dockerCli, opts)
		},
	}
	cmd.Flags().StringVar(&opts.name, "name", "", "Key name (letters, digits, '.', '_', '-')")
	_ = cmd.MarkFlagRequired("name")
	cmd.Flags().StringVar(&opts.external.kms, "kms", "", "Create or adopt the key in a KMS (awskms://, gcpkms://, azurekms://, hashivault://)")
	cmd.Flags().StringVar(&opts.external.pkcs11, "pkcs11", "", "Generate or adopt the key in a PKCS#11 token (RFC 7512 pkcs11: URI)")
	cmd.MarkFlagsMutuallyExclusive("kms", "pkcs11")
	addIdentityFlags(cmd, &opts.identity)
	return cmd
}

func runKeyGenerate(ctx context.Context, dockerCli stdio, opts keyGenerateOptions) error {
	if err := ValidateKeyName(opts.name); err != nil {
		return usageError(err)
	}
	ident, err := opts.identity.identity(opts.name)
	if err != nil {
		return err
	}
	if opts.external.set() {
		if err := runKeyGenerateExternal(ctx, dockerCli, opts); err != nil {
			return err
		}
		return recordIdentity(dockerCli.Out(), opts.root.keyStore(), opts.name, ident, opts.identity.set())
	}
	ks := opts.root.keyStore()
	if _, err := ks.Public(opts.name); err == nil {
		return fmt.Errorf("generate key: %w: %q in %s", ErrKeyExists, opts.name, ks.Dir)
	}
	pw, err := opts.root.passwords(dockerCli).get(opts.name, true)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	k, err := ks.Generate(opts.name, pw)
	if err != nil {
		return err
	}
	privPath, _ := ks.paths(k.Name)
	if _, err = fmt.Fprintf(dockerCli.Out(), "Generated key %s\n  key ID:      %s\n  public key:  %s\n  private key: %s (encrypted)\n",
		k.Name, k.KeyID, k.Path, privPath); err != nil {
		return err
	}
	return recordIdentity(dockerCli.Out(), ks, k.Name, ident, opts.identity.set())
}

// recordIdentity records the identity of the new key name when the flags
// gave one (set), and prints it; a key without flags is known by its name.
func recordIdentity(w io.Writer, ks KeyStore, name string, id notarize.Identity, set bool) error {
	if set {
		if err := ks.SetIdentity(name, id); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "  identity:    %s\n", formatIdentity(id))
	return err
}

type keyListOptions struct {
	root   *rootOptions
	format string
}

func newKeyListCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := keyListOptions{root: root}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the keys in the key store",
		Example: `  docker notarize key list
  docker notarize key ls -o json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeyList(cmd.Context(), dockerCli, opts)
		},
	}
	addOutputFlag(cmd, &opts.format)
	outputCommand(cmd, dockerCli, &opts.format)
	return cmd
}

func runKeyList(_ context.Context, dockerCli stdio, opts keyListOptions) error {
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	ks := opts.root.keyStore()
	keys, err := ks.List()
	if err != nil {
		return err
	}
	idents, err := keyIdentities(ks, keys)
	if err != nil {
		return err
	}
	if opts.format == formatJSON {
		return writeKeysJSON(dockerCli.Out(), keys, idents)
	}
	return writeKeysText(dockerCli.Out(), keys, idents)
}

type keyExportOptions struct {
	root *rootOptions
	name string
}

func newKeyExportCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := keyExportOptions{root: root}
	cmd := &cobra.Command{
		Use:   "export NAME",
		Short: "Print a key's public key as PEM (for a policy or another verifier)",
		Example: `  docker notarize key export release
  docker notarize key export release > release.pub`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.name = args[0]
			return runKeyExport(cmd.Context(), dockerCli, opts)
		},
	}
	completeKeyNameArg(cmd, root)
	return cmd
}

func runKeyExport(_ context.Context, dockerCli stdio, opts keyExportOptions) error {
	k, err := opts.root.keyStore().Public(opts.name)
	if errors.Is(err, ErrBadKeyName) {
		return usageError(err)
	}
	if err != nil {
		return fmt.Errorf("export key: %w", err)
	}
	_, err = dockerCli.Out().Write(k.PEM)
	return err
}
