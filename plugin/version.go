package plugin

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Version is the plugin's version: the one its metadata reports to docker
// (Metadata), `docker notarize version` and `docker-notarize --version`
// print. The main package sets it from its build-time version before it
// builds the command tree.
var Version = "dev"

// versionOutput is version's JSON output; field names are part of the CLI's
// contract.
type versionOutput struct {
	SchemaVersion int    `json:"schemaVersion"`
	Version       string `json:"version"`
	GoVersion     string `json:"goVersion"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
}

func newVersionCmd(dockerCli stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [OPTIONS]",
		Short: "Show the plugin's version",
		Args:  exactArgs(0),
		Example: `  docker notarize version
  docker notarize version -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateFormat(format); err != nil {
				return usageError(err)
			}
			v := versionOutput{SchemaVersion: schemaVersion, Version: Version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
			out := dockerCli.Out()
			if format == formatJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return fmt.Errorf("write version: %w", err)
				}
				return nil
			}
			_, err := fmt.Fprintf(out, "Version:    %s\nGo version: %s\nOS/Arch:    %s/%s\n", v.Version, v.GoVersion, v.OS, v.Arch)
			if err != nil {
				return fmt.Errorf("write version: %w", err)
			}
			return nil
		},
	}
	addOutputFlag(cmd, &format)
	outputCommand(cmd, dockerCli, &format)
	return cmd
}
