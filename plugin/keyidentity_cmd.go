package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

type keyIdentityOptions struct {
	root     *rootOptions
	name     string
	identity identityFlags
	// nameSet and emailSet say which flags were given (--email "" clears
	// the email).
	nameSet, emailSet bool
}

func newKeyIdentityCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := keyIdentityOptions{root: root}
	cmd := &cobra.Command{
		Use:   "identity NAME",
		Short: "Show or set the signer identity (display name, email) a key's statements carry",
		Long: `Show the signer identity the key store records for key NAME: the display name
and optional email that sign, untrust and unsupport put in the statements the
key signs (by default the key name, without email). With --display-name or
--email, record a new one; --email "" removes the email.

A ledger that enrols identities (notarize-ledger --signers in YAML) refuses a
statement whose name or email is not the key's enrolled one: set the key's
identity to what the ledger's operators enrolled. Statements already in the
ledger keep the identity they were signed with.`,
		Example: `  docker notarize key identity release
  docker notarize key identity release --display-name release-bot --email release@example.com
  docker notarize key identity release --email ""`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.name = args[0]
			opts.nameSet, opts.emailSet = cmd.Flags().Changed("display-name"), cmd.Flags().Changed("email")
			return runKeyIdentity(cmd.Context(), dockerCli, opts)
		},
	}
	addIdentityFlags(cmd, &opts.identity)
	completeKeyNameArg(cmd, root)
	return cmd
}

func runKeyIdentity(_ context.Context, dockerCli stdio, opts keyIdentityOptions) error {
	if err := ValidateKeyName(opts.name); err != nil {
		return usageError(err)
	}
	ks := opts.root.keyStore()
	if _, err := ks.Public(opts.name); err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return usageError(fmt.Errorf("key identity: %w", err))
		}
		return fmt.Errorf("key identity: %w", err)
	}
	id, err := ks.Identity(opts.name)
	if err != nil && (!errors.Is(err, ErrBadKeyIdentity) || !opts.nameSet) {
		return err // a corrupt record is only replaced by a whole new identity
	}
	if opts.nameSet || opts.emailSet {
		if opts.nameSet {
			id.Name = opts.identity.displayName
		}
		if opts.emailSet {
			id.Email = opts.identity.email
		}
		if err := id.Validate(); err != nil {
			return usageError(fmt.Errorf("key identity %s: %w: %w", opts.name, ErrBadKeyIdentity, err))
		}
		if err := ks.SetIdentity(opts.name, id); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(dockerCli.Out(), "%s: %s\n", opts.name, formatIdentity(id))
	return err
}
