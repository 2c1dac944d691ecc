package plugin

import (
	"context"
	"sort"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	root     *rootOptions
	image    string
	insecure []string
	format   string
}

func newInspectCmd(dockerCli command.Cli, root *rootOptions) *cobra.Command {
	opts := inspectOptions{root: root}
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE",
		Short: "Show every verified statement the ledger holds about an image (or file)",
		Long: `Show every statement the ledger holds about an image (or file), by any signer,
in log order. Each one's inclusion proof and signature are verified first. The
signer name is what the statement says; only the key ID is authenticated.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.image = args[0]
			return runInspect(cmd.Context(), dockerCli, opts)
		},
	}
	addRegistryFlags(cmd, &opts.insecure)
	addOutputFlag(cmd, &opts.format)
	return cmd
}

func runInspect(ctx context.Context, dockerCli command.Cli, opts inspectOptions) error {
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	resolver, err := opts.root.resolver(opts.insecure)
	if err != nil {
		return usageError(err)
	}
	local, err := opts.root.keyStore().List()
	if err != nil {
		return err
	}
	localNames := map[string]string{}
	for _, k := range local {
		if _, dup := localNames[k.KeyID]; !dup {
			localNames[k.KeyID] = k.Name
		}
	}
	subject, ok := DigestOnly(opts.image)
	if !ok {
		if subject, err = resolver.Resolve(ctx, opts.image, false); err != nil {
			return err
		}
	}
	client, err := opts.root.ledger(ctx, dockerCli.Err())
	if err != nil {
		return err
	}
	res, err := client.Lookup(ctx, subject.Digest)
	if err != nil {
		return err
	}
	out := inspectOutput{Digest: string(subject.Digest), CheckpointSize: res.Checkpoint.Size, Statements: []statementOutput{}}
	for _, r := range res.Records {
		p := r.Statement.Predicate
		name := ""
		if len(r.Statement.Subject) > 0 {
			name = r.Statement.Subject[0].Name
		}
		out.Statements = append(out.Statements, statementOutput{
			LogIndex:   r.Index,
			Timestamp:  p.Timestamp.UTC(),
			Status:     string(p.Status),
			Signer:     p.Name,
			KeyID:      r.KeyID,
			LocalKey:   localNames[r.KeyID],
			Subject:    name,
			Kind:       p.Kind,
			MediaType:  p.MediaType,
			Size:       p.Size,
			Attributes: p.Attributes,
		})
	}
	sort.Slice(out.Statements, func(i, j int) bool { return out.Statements[i].LogIndex < out.Statements[j].LogIndex })
	if opts.format == formatJSON {
		return writeJSON(dockerCli.Out(), out)
	}
	return writeInspectText(dockerCli.Out(), out)
}
