package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath is the JSON Schema of --output json, the documented contract.
var schemaPath = filepath.Join("..", "docs", "schema", "docker-notarize.schema.json")

// compileSchema returns the schema of each command's document
// (#/$defs/NAME) and of any document (the root).
func compileSchema(t *testing.T) func(def string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	id, _ := doc.(map[string]any)["$id"].(string)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	return func(def string) *jsonschema.Schema {
		t.Helper()
		loc := id
		if def != "" {
			loc += "#/$defs/" + def
		}
		s, err := c.Compile(loc)
		if err != nil {
			t.Fatalf("compile %s: %v", loc, err)
		}
		return s
	}
}

// checkJSONOutput checks that stdout is exactly one JSON object, valid
// against the command's schema and the whole schema, and that its exitCode,
// when it has one, is the process's.
func checkJSONOutput(t *testing.T, schema func(string) *jsonschema.Schema, def, stdout string, code int) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("stdout has more than one JSON document:\n%s", stdout)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{def, ""} {
		if err := schema(d).Validate(inst); err != nil {
			t.Fatalf("output does not match #/$defs/%s: %v\n%s", def, err, stdout)
		}
	}
	if got, ok := v["exitCode"]; ok && got != float64(code) {
		t.Fatalf("exitCode %v in the output, the process exited %d:\n%s", got, code, stdout)
	}
	if code != 0 && !strings.Contains(stdout, `"error"`) && !strings.Contains(stdout, `"status": "UN`) && def != "audit" {
		t.Fatalf("exit %d without an error in the JSON:\n%s", code, stdout)
	}
	return v
}

// TestJSONSchema runs every command that prints a result with -o json
// against a real ledger and registry, in success and in failure, and checks
// each output against docs/schema/docker-notarize.schema.json.
func TestJSONSchema(t *testing.T) {
	t.Parallel()
	schema := compileSchema(t)
	h := newHarness(t, "alice")
	app, multi := h.reg.host+"/app:v1", h.reg.host+"/multi:v1"
	// bob is the key alice's statements are rotated to (key rotate).
	bob := filepath.Join(t.TempDir(), "bob.key")
	if b, err := os.ReadFile(filepath.Join("testdata", "keys", "bob.key")); err != nil || os.WriteFile(bob, b, 0o600) != nil {
		t.Fatal("copy bob's key:", err)
	}
	file := filepath.Join(t.TempDir(), "dist.tar")
	if err := os.WriteFile(file, []byte("an artifact"), 0o600); err != nil {
		t.Fatal(err)
	}
	down := closedLedgerURL(t)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	for _, tc := range []struct {
		name, def string
		ctx       context.Context
		args      []string
		code      int
	}{
		{name: "verify UNKNOWN before any statement", def: "verify", args: []string{"verify", "-o", "json", app}, code: 2},
		{name: "sign", def: "sign", args: []string{"sign", "-o", "json", "--attr", "team=payments", app}, code: 0},
		{name: "sign again: a duplicate", def: "sign", args: []string{"sign", "-o", "json", "--attr", "team=payments", app}, code: 0},
		{name: "sign --recursive", def: "sign", args: []string{"sign", "-o", "json", "--recursive", multi}, code: 0},
		{name: "verify TRUSTED", def: "verify", args: []string{"verify", "-o", "json", app}, code: 0},
		{name: "unsupport", def: "sign", args: []string{"unsupport", "-o", "json", "file:" + file}, code: 0},
		{name: "verify UNSUPPORTED", def: "verify", args: []string{"verify", "-o", "json", "file:" + file}, code: 3},
		{name: "untrust", def: "sign", args: []string{"untrust", "-o", "json", app}, code: 0},
		{name: "verify UNTRUSTED", def: "verify", args: []string{"verify", "-o", "json", app}, code: 1},
		{name: "verify, ledger down", def: "verify", args: []string{"verify", "-o", "json", "--ledger", down, app}, code: ExitCouldNotVerify},
		{name: "verify, typo in --signer", def: "verify", args: []string{"verify", "-o", "json", "--signer", "alcie", app}, code: ExitUsage},
		{name: "verify, empty key store", def: "verify", args: []string{"verify", "-o", "json", "--signer", "./missing.pub", app}, code: ExitUsage},
		{name: "verify, bad flag value", def: "error", args: []string{"verify", "-o", "json", "--max-age", "soon", app}, code: ExitUsage},
		{name: "verify, two images", def: "error", args: []string{"verify", "-o", "json", app, multi}, code: ExitUsage},
		{name: "inspect", def: "inspect", args: []string{"inspect", "-o", "json", app}, code: 0},
		{name: "inspect --all", def: "inspect", args: []string{"inspect", "-o", "json", "--all", app}, code: 0},
		{name: "inspect, no statements", def: "inspect", args: []string{"inspect", "-o", "json", h.reg.host + "/app@sha256:" + strings.Repeat("0", 64)}, code: 0},
		{name: "inspect, ledger down", def: "error", args: []string{"inspect", "-o", "json", "--ledger", down, app}, code: ExitError},
		{name: "sign, typo in --key", def: "error", args: []string{"sign", "-o", "json", "--key", "alcie", app}, code: ExitUsage},
		{name: "sign, ledger down", def: "error", args: []string{"sign", "-o", "json", "--ledger", down, app}, code: ExitError},
		{name: "sign, interrupted", def: "error", ctx: cancelled, args: []string{"sign", "-o", "json", app}, code: ExitInterrupted},
		{name: "key list", def: "keyList", args: []string{"key", "list", "-o", "json"}, code: 0},
		{name: "ledger list", def: "ledgerList", args: []string{"ledger", "list", "-o", "json"}, code: 0},
		{name: "audit of a repository", def: "audit", args: []string{"audit", "-o", "json", "--all-tags", h.reg.host + "/multi"}, code: 0},
		{name: "audit, ledger down", def: "audit", args: []string{"audit", "-o", "json", "--ledger", down, "--all-tags", h.reg.host + "/app"}, code: ExitCouldNotVerify},
		{name: "audit, bad flags", def: "error", args: []string{"audit", "-o", "json", "--tags", "v1"}, code: ExitUsage},
		{name: "ls", def: "ls", args: []string{"ls", "-o", "json"}, code: 0},
		{name: "ls --status", def: "ls", args: []string{"ls", "-o", "json", "--status", "untrusted"}, code: 0},
		{name: "ls, bad --status", def: "ls", args: []string{"ls", "-o", "json", "--status", "fine"}, code: ExitUsage},
		{name: "ls, ledger down", def: "ls", args: []string{"ls", "-o", "json", "--ledger", down}, code: ExitCouldNotVerify},
		{name: "version", def: "version", args: []string{"version", "-o", "json"}, code: 0},
		{name: "key rotate --dry-run", def: "keyRotate", args: []string{"key", "rotate", "-o", "json", "--dry-run", "alice", bob}, code: 0},
		{name: "key rotate", def: "keyRotate", args: []string{"key", "rotate", "-o", "json", "alice", bob}, code: 0},
		{name: "key rotate, the same key twice", def: "error", args: []string{"key", "rotate", "-o", "json", "alice", "alice"}, code: ExitUsage},
		{name: "key revoke, not confirmed", def: "error", args: []string{"key", "revoke", "-o", "json", "alice"}, code: ExitUsage},
		{name: "key revoke", def: "keyRevoke", args: []string{"key", "revoke", "-o", "json", "--yes", "--reason", "stolen", "alice"}, code: 0},
		{name: "key revoke again", def: "keyRevoke", args: []string{"key", "revoke", "-o", "json", "--yes", "alice"}, code: 0},
		{name: "verify, a revoked signer", def: "verify", args: []string{"verify", "-o", "json", app}, code: 1},
		{name: "inspect, a revoked signer", def: "inspect", args: []string{"inspect", "-o", "json", app}, code: 0},
	} {
		ctx := tc.ctx
		if ctx == nil {
			ctx = t.Context()
		}
		out, errOut, code := h.runContext(ctx, nil, tc.args...)
		if code != tc.code {
			t.Fatalf("%s: %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.name, tc.args, code, tc.code, out, errOut)
		}
		t.Run(tc.name, func(t *testing.T) {
			checkJSONOutput(t, schema, tc.def, out, code)
		})
	}
}

// TestJSONSchemaRefusesDrift: the schema is strict enough to catch the
// changes the contract forbids (the old shapes among them), so that the
// test above cannot pass by accident.
func TestJSONSchemaRefusesDrift(t *testing.T) {
	schema := compileSchema(t)
	const d = `"sha256:2181334efa40a79364938fab1719774de580df6e930eee1c1422c41f2642324f"`
	const k = `"4296131516ca6e70a30a4b613434ddea71746f3fd2910b9fc52c4582408c7760"`
	stmt := `{"subject":"a","digest":` + d + `,"status":"TRUSTED","logIndex":0,"checkpointSize":1,"keyId":` + k + `,"signer":"alice","timestamp":"2025-06-01T12:01:00Z","duplicate":false}`
	for _, tc := range []struct{ name, def, doc string }{
		{"sign as the old bare array", "sign", `[` + stmt + `]`},
		{"lower-case status", "sign", `{"schemaVersion":1,"statements":[` + strings.Replace(stmt, "TRUSTED", "trusted", 1) + `]}`},
		{"no schemaVersion", "sign", `{"statements":[` + stmt + `]}`},
		{"another schemaVersion", "sign", `{"schemaVersion":2,"statements":[` + stmt + `]}`},
		{"error without exitCode", "sign", `{"schemaVersion":1,"statements":[],"error":"boom"}`},
		{"verify ERROR without error", "verify", `{"schemaVersion":1,"status":"ERROR","exitCode":4,"digest":"","reason":"x"}`},
		{"verify TRUSTED with the exit code of UNKNOWN", "verify", `{"schemaVersion":1,"status":"TRUSTED","exitCode":2,"digest":` + d + `,"signer":"a","keyId":` + k + `,"timestamp":"2025-06-01T12:01:00Z","logIndex":0,"checkpointSize":1,"reason":"x"}`},
		{"verify TRUSTED without its statement", "verify", `{"schemaVersion":1,"status":"TRUSTED","exitCode":0,"digest":` + d + `,"checkpointSize":1,"reason":"x"}`},
		{"an unknown member", "keyList", `{"schemaVersion":1,"keys":[],"extra":true}`},
		{"an error of exit 0", "error", `{"schemaVersion":1,"error":"x","exitCode":0}`},
		{"a bad timestamp", "inspect", `{"schemaVersion":1,"digest":` + d + `,"checkpointSize":1,"statements":[{"logIndex":0,"timestamp":"yesterday","status":"TRUSTED","signer":"a","keyId":` + k + `}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(tc.doc)))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema(tc.def).Validate(inst); err == nil {
				t.Fatalf("#/$defs/%s accepts %s", tc.def, tc.doc)
			}
		})
	}
}
