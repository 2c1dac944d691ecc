package plugin

import (
	"errors"
	"fmt"
	"os"
)

// The verify-only build of docker-notarize (cmd/docker-notarize built with
// the tag notarize_verifyonly, as `make build` and `make install` do) runs a
// verify itself, and hands every other command line to the full CLI,
// FullCLIName, installed next to it. It links neither the docker CLI's
// command package nor its daemon client, whose package initialisation was
// most of a verify's start-up (issue 14).

// FullCLIName is the program name of the full CLI that the verify-only
// build runs for every command line but a verify. It is not named docker-*:
// the docker CLI would take it for a plugin.
const FullCLIName = "notarize-cli"

// ErrFullCLIMissing is returned by FullCLIPath when the full CLI is not
// installed next to the verify-only build.
var ErrFullCLIMissing = errors.New("this docker-notarize is the verify-only build, and the full CLI " + FullCLIName + " that runs every other command is not installed next to it (`make install` installs both)")

// FullCLIPath returns the absolute path of the full CLI: next to this
// executable, symlinks resolved, never from PATH, and refused when another
// user could have replaced it (checkHelper).
func FullCLIPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating %s: %w", FullCLIName, err)
	}
	return fullCLINextTo(exe)
}

// fullCLINextTo is FullCLIPath for the executable exe. A full CLI that is
// exe itself (a symlink to it, or the same file under both names) is
// refused: the verify-only build would execute itself forever.
func fullCLINextTo(exe string) (string, error) {
	p, err := executableNextTo(exe, FullCLIName, "full CLI", ErrFullCLIMissing)
	if err != nil {
		return "", err
	}
	self, err1 := os.Stat(exe)
	fi, err2 := os.Stat(p)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("full CLI %s: %w", p, errors.Join(err1, err2))
	}
	if os.SameFile(self, fi) {
		return "", fmt.Errorf("full CLI %s: refused, it is this program itself (%s): install notarize-cli from `make build`", p, exe)
	}
	return p, nil
}

// VerifyOnlyRuns reports whether the verify-only tree (NewVerifyOnlyCmd
// with name and isPlugin) runs args, the command line after the program's
// name (and after PluginName for a plugin), exactly as the full CLI would:
// a verify whose flags parse, with one argument and no help asked for. Any
// other command line, a usage error included, is the full CLI's to run
// and to word. The check parses a tree of its own: flags parsed twice
// would repeat --signer's values.
func VerifyOnlyRuns(name string, isPlugin bool, args []string) bool {
	root := NewVerifyOnlyCmd(name, isPlugin, nil)
	c, rest, err := root.Traverse(args)
	if err != nil || c == nil || c.Parent() != root || c.Name() != "verify" {
		return false
	}
	// Cobra adds --help and --version when it executes a command: before
	// that both fail to parse here, and go to the full CLI.
	if err := c.ParseFlags(rest); err != nil {
		return false
	}
	if len(c.Flags().Args()) != 1 {
		return false
	}
	return c.ValidateRequiredFlags() == nil && c.ValidateFlagGroups() == nil
}
