package plugin

import (
	"strings"

	"github.com/spf13/cobra"
)

// ledgerCommand wires cmd, a command that talks to a ledger and prints a
// result in the --output format bound to format: the ledger flags
// (addLedgerFlags), errors as JSON in JSON mode (jsonErrors), and shell
// completion of key names for its --signer and --key flags.
func ledgerCommand(cmd *cobra.Command, dockerCli stdio, root *rootOptions, format *string) {
	addLedgerFlags(cmd, root)
	jsonErrors(cmd, dockerCli, format)
	completeKeyFlags(cmd, root)
	completeOutputFlag(cmd)
}

// completeKeyFlags completes the key store's names for cmd's --signer and
// --key flags, where it has them. Both also take a path: the shell's file
// completion applies when no name matches.
func completeKeyFlags(cmd *cobra.Command, root *rootOptions) {
	for _, name := range []string{"signer", "key"} {
		if cmd.Flags().Lookup(name) != nil {
			_ = cmd.RegisterFlagCompletionFunc(name, keyNameCompletion(root, cobra.ShellCompDirectiveDefault))
		}
	}
}

// completeOutputFlag completes --output with the formats cmd takes.
func completeOutputFlag(cmd *cobra.Command) {
	f := cmd.Flags().Lookup("output")
	if f == nil {
		return
	}
	// The default first: text, or audit's table.
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{f.DefValue, formatJSON}, cobra.ShellCompDirectiveNoFileComp))
}

// keyNameCompletion completes the names of the keys in the key store that
// start with what was typed; directive says what the shell does besides.
// A key store that cannot be read completes nothing.
func keyNameCompletion(root *rootOptions, directive cobra.ShellCompDirective) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		keys, err := root.keyStore().List()
		if err != nil {
			return nil, directive
		}
		var names []cobra.Completion
		for _, k := range keys {
			if strings.HasPrefix(k.Name, toComplete) {
				names = append(names, cobra.CompletionWithDesc(k.Name, "key "+shortKeyID(k.KeyID)))
			}
		}
		return names, directive
	}
}

// completeKeyNameArg completes cmd's first argument with the key store's
// names, and nothing else (`key export NAME`).
func completeKeyNameArg(cmd *cobra.Command, root *rootOptions) {
	names := keyNameCompletion(root, cobra.ShellCompDirectiveNoFileComp)
	cmd.ValidArgsFunction = func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(c, args, toComplete)
	}
}

// outputCommand wires cmd, a command that prints a result in the --output
// format bound to format but does not talk to a ledger: errors as JSON in
// JSON mode and completion of --output.
func outputCommand(cmd *cobra.Command, dockerCli stdio, format *string) {
	jsonErrors(cmd, dockerCli, format)
	completeOutputFlag(cmd)
}
