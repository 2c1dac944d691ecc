package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// EnvPassword names the environment variable holding the key password for
// non-interactive use.
const EnvPassword = "NOTARIZE_PASSWORD"

// ErrNoPassword is returned when a password is needed, NOTARIZE_PASSWORD is
// unset and stdin is not a terminal to prompt on.
var ErrNoPassword = errors.New("no password: set " + EnvPassword + " or run in a terminal")

// ErrEmptyPassword is returned when a new key would be encrypted with an
// empty password: typed at the prompt, or NOTARIZE_PASSWORD set but empty.
var ErrEmptyPassword = errors.New("empty password refused: the key would be as good as unencrypted")

// passwordPrompt gets a key password from NOTARIZE_PASSWORD or, when stdin is
// a terminal, by prompting on stderr without echo.
type passwordPrompt struct {
	lookupEnv    func(string) (string, bool)
	stdinFD      int
	isTerminal   func(fd int) bool
	readPassword func(fd int) ([]byte, error)
	prompt       io.Writer
}

// get returns the password for what (a key name). With confirm (new keys) the
// prompt asks twice, and an empty password is refused whether typed or set
// in NOTARIZE_PASSWORD; opening an existing key takes what it is given.
func (p passwordPrompt) get(what string, confirm bool) ([]byte, error) {
	if pw, ok := p.lookupEnv(EnvPassword); ok {
		if confirm && pw == "" {
			return nil, fmt.Errorf("%s is set but empty: %w", EnvPassword, ErrEmptyPassword)
		}
		return []byte(pw), nil
	}
	if p.isTerminal == nil || p.readPassword == nil || !p.isTerminal(p.stdinFD) {
		return nil, ErrNoPassword
	}
	fmt.Fprintf(p.prompt, "Password for key %s: ", what)
	pw, err := p.readPassword(p.stdinFD)
	fmt.Fprintln(p.prompt)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if !confirm {
		return pw, nil
	}
	if len(pw) == 0 {
		return nil, fmt.Errorf("read password: %w", ErrEmptyPassword)
	}
	fmt.Fprintf(p.prompt, "Repeat password for key %s: ", what)
	again, err := p.readPassword(p.stdinFD)
	fmt.Fprintln(p.prompt)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("read password: passwords do not match")
	}
	return pw, nil
}
