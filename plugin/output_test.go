package plugin

import (
	"bytes"
	"testing"
	"time"
)

// TestOutputFormats covers what the command tests cannot produce with our own
// signer: hostile text from other signers' statements and the error shapes.
func TestOutputFormats(t *testing.T) {
	ts := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	size := uint64(7)
	hostile := inspectOutput{
		Digest:         "sha256:2181334efa40a79364938fab1719774de580df6e930eee1c1422c41f2642324f",
		CheckpointSize: 7,
		Statements: []statementOutput{{
			LogIndex:   3,
			Timestamp:  ts,
			Status:     "TRUSTED",
			Signer:     "alice\x1b[2J\x1b[32m TRUSTED",
			KeyID:      "c64dd13f1e213c4a3b06dfa957bafe74d3087646b277d2ffea49d59c066f1b68",
			LocalKey:   "bob",
			Attributes: map[string]string{"z": "last", "a\x07": "bell\nnewline"},
		}, {
			LogIndex:  5,
			Timestamp: ts.Add(time.Hour),
			Status:    "UNTRUSTED",
			KeyID:     "4296131516ca6e70a30a4b613434ddea71746f3fd2910b9fc52c4582408c7760",
		}},
	}
	for _, tc := range []struct {
		name  string
		write func(*bytes.Buffer) error
	}{
		{"inspect-hostile.txt", func(b *bytes.Buffer) error { return writeInspectText(b, hostile) }},
		{"inspect-empty.txt", func(b *bytes.Buffer) error {
			return writeInspectText(b, inspectOutput{Digest: hostile.Digest, CheckpointSize: 7})
		}},
		{"verify-error.json", func(b *bytes.Buffer) error {
			return writeJSON(b, verifyOutput{SchemaVersion: schemaVersion, Status: statusError, ExitCode: ExitCouldNotVerify, Digest: hostile.Digest, Reason: "could not verify: look up: ledger unreachable", Error: "could not verify: look up: ledger unreachable"})
		}},
		{"verify-hostile.txt", func(b *bytes.Buffer) error {
			return writeVerifyText(b, verifyOutput{Status: "UNKNOWN", Digest: hostile.Digest, CheckpointSize: &size, Reason: "ledger said \x1b]0;pwned\x07"})
		}},
		{"sign-duplicate.txt", func(b *bytes.Buffer) error {
			return writeSignText(b, []signOutput{{Subject: "file.tar", Digest: hostile.Digest, Status: "TRUSTED", LogIndex: 3, CheckpointSize: 7, Duplicate: true}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.write(&b); err != nil {
				t.Fatal(err)
			}
			if bytes.ContainsAny(b.Bytes(), "\x1b\x07") {
				t.Errorf("output carries control characters: %q", b.String())
			}
			checkGolden(t, tc.name, b.String())
		})
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantLines string
	}{
		{"alice", "alice", "alice"},
		{"über-signer ✓", "über-signer ✓", "über-signer ✓"},
		{"esc\x1b[2J", "esc?[2J", "esc?[2J"},
		{"a\nb\tc", "a?b?c", "a\nb\tc"},
		{"bad\xffutf8", "bad?utf8", "bad?utf8"},
		// A right-to-left override makes "alice\u202egnp.exe" read as
		// "aliceexe.png"; zero-width and separator characters hide text.
		{"alice\u202egnp.exe", "alice?gnp.exe", "alice?gnp.exe"},
		{"al\u200bice\ufeff", "al?ice?", "al?ice?"},
		{"a\u2028b\u2029c", "a?b?c", "a?b?c"},
	} {
		if got := printable(tc.in); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := printableLines(tc.in); got != tc.wantLines {
			t.Errorf("printableLines(%q) = %q, want %q", tc.in, got, tc.wantLines)
		}
	}
}
