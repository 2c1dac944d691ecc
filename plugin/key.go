package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

func newKeyCmd(dockerCli command.Cli, root *rootOptions) *cobra.Command {
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
	)
	return cmd
}

type keyGenerateOptions struct {
	root *rootOptions
	name string
}

func newKeyGenerateCmd(dockerCli command.Cli, root *rootOptions) *cobra.Command {
	opts := keyGenerateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "generate --name NAME",
		Short: "Generate an ECDSA P-256 signing key, encrypted with a password",
		Long: `Generate an ECDSA P-256 signing key pair in the key store. The private key is
encrypted with a password taken from NOTARIZE_PASSWORD, or asked for (twice)
when stdin is a terminal. An existing key is never overwritten.`,
		Example: `  docker notarize key generate --name release
  NOTARIZE_PASSWORD=… docker notarize key generate --name ci-signer`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeyGenerate(cmd.Context(), dockerCli, opts)
		},
	}
	cmd.Flags().StringVar(&opts.name, "name", "", "Key name (letters, digits, '.', '_', '-')")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func runKeyGenerate(_ context.Context, dockerCli command.Cli, opts keyGenerateOptions) error {
	if err := ValidateKeyName(opts.name); err != nil {
		return usageError(err)
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
	_, err = fmt.Fprintf(dockerCli.Out(), "Generated key %s\n  key ID:      %s\n  public key:  %s\n  private key: %s (encrypted)\n",
		k.Name, k.KeyID, k.Path, privPath)
	return err
}

type keyListOptions struct {
	root *rootOptions
}

func newKeyListCmd(dockerCli command.Cli, root *rootOptions) *cobra.Command {
	opts := keyListOptions{root: root}
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the keys in the key store",
		Example: `  docker notarize key list
  docker notarize key ls`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeyList(cmd.Context(), dockerCli, opts)
		},
	}
}

func runKeyList(_ context.Context, dockerCli command.Cli, opts keyListOptions) error {
	keys, err := opts.root.keyStore().List()
	if err != nil {
		return err
	}
	return writeKeysText(dockerCli.Out(), keys)
}

type keyExportOptions struct {
	root *rootOptions
	name string
}

func newKeyExportCmd(dockerCli command.Cli, root *rootOptions) *cobra.Command {
	opts := keyExportOptions{root: root}
	return &cobra.Command{
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
}

func runKeyExport(_ context.Context, dockerCli command.Cli, opts keyExportOptions) error {
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
