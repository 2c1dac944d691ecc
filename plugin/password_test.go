package plugin

import (
	"errors"
	"io"
	"testing"
)

func TestPasswordPrompt(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	answers := func(pws ...string) func(int) ([]byte, error) {
		return func(int) ([]byte, error) {
			if len(pws) == 0 {
				return nil, io.EOF
			}
			pw := pws[0]
			pws = pws[1:]
			return []byte(pw), nil
		}
	}
	tty := func(int) bool { return true }
	for _, tc := range []struct {
		name    string
		p       passwordPrompt
		confirm bool
		want    string
		wantErr error
	}{
		{name: "env wins", p: passwordPrompt{lookupEnv: func(string) (string, bool) { return "from-env", true }, isTerminal: tty, readPassword: answers("typed")}, want: "from-env"},
		{name: "env set but empty refused for a new key", p: passwordPrompt{lookupEnv: func(string) (string, bool) { return "", true }}, confirm: true, wantErr: ErrEmptyPassword},
		{name: "env set but empty opens an existing key", p: passwordPrompt{lookupEnv: func(string) (string, bool) { return "", true }}, want: ""},
		{name: "no terminal", p: passwordPrompt{lookupEnv: noEnv, isTerminal: func(int) bool { return false }, readPassword: answers("x")}, wantErr: ErrNoPassword},
		{name: "prompt", p: passwordPrompt{lookupEnv: noEnv, isTerminal: tty, readPassword: answers("typed")}, want: "typed"},
		{name: "prompt with confirmation", p: passwordPrompt{lookupEnv: noEnv, isTerminal: tty, readPassword: answers("typed", "typed")}, confirm: true, want: "typed"},
		{name: "confirmation differs", p: passwordPrompt{lookupEnv: noEnv, isTerminal: tty, readPassword: answers("typed", "other")}, confirm: true, wantErr: errAny},
		{name: "empty refused for a new key", p: passwordPrompt{lookupEnv: noEnv, isTerminal: tty, readPassword: answers("", "")}, confirm: true, wantErr: ErrEmptyPassword},
		{name: "read fails", p: passwordPrompt{lookupEnv: noEnv, isTerminal: tty, readPassword: answers()}, wantErr: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.prompt = io.Discard
			got, err := tc.p.get("alice", tc.confirm)
			switch {
			case tc.wantErr == errAny:
				if err == nil {
					t.Fatalf("get = %q, want an error", got)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("get = %q, %v; want %v", got, err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case string(got) != tc.want:
				t.Fatalf("get = %q, want %q", got, tc.want)
			}
		})
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")
