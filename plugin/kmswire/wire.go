// Package kmswire is the contract between the docker-notarize plugin and its
// KMS helper, notarize-kms: the executable that links the cloud KMS
// SDKs (AWS KMS, Google Cloud KMS, Azure Key Vault, HashiCorp Vault transit,
// through sigstore's providers) so that the plugin, which runs on every
// `docker notarize verify`, does not pay for their package initialisation.
//
// The protocol is one request per process: the plugin starts the helper by
// absolute path (never from PATH), writes one JSON Request to its stdin and
// closes it; the helper writes one JSON Response to its stdout and exits.
// Both are capped (MaxRequest, MaxResponse) and carry Version; a helper or a
// plugin of another version is refused, not guessed at. The helper is not
// trusted with the outcome: the plugin verifies every signature it returns
// under the public key its key store recorded.
//
// This package imports nothing but the standard library: the plugin links it.
package kmswire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Version is the protocol version this package speaks.
const Version = 1

// HelperName is the helper's executable name, installed next to the plugin.
// It must not start with "docker-": the docker CLI takes every docker-*
// file in a cli-plugins directory for a plugin, and lists this one as an
// invalid plugin in `docker --help` and `docker info`.
const HelperName = "notarize-kms"

// Limits of what either side reads from the other.
const (
	// MaxMessage is the largest message a sign or generate request carries
	// (a statement's signing payload is a few KB).
	MaxMessage = 1 << 20
	// MaxRequest bounds a request: the message, base64-encoded, plus the rest.
	MaxRequest = MaxMessage*4/3 + 64<<10
	// MaxResponse bounds a response: a public key and a signature.
	MaxResponse = 64 << 10
	// maxStderr is how much of the helper's stderr is kept for an error.
	maxStderr = 4 << 10
)

// Op is what a request asks of the helper.
type Op string

// The operations.
const (
	// OpPublicKey returns the key's public key.
	OpPublicKey Op = "public-key"
	// OpSign signs Message and returns the signature and the public key of
	// the key that made it.
	OpSign Op = "sign"
	// OpGenerate creates the key the URI names (or adopts it when it
	// exists or cannot be created, e.g. a key ID), signs Message with it, and
	// returns its public key and the signature.
	OpGenerate Op = "generate"
)

// Request is what the plugin asks, one per helper process.
type Request struct {
	// Version is the protocol version (Version).
	Version int `json:"version"`
	// Op is the operation.
	Op Op `json:"op"`
	// URI is the key's URI, e.g. awskms:///alias/release.
	URI string `json:"uri"`
	// Hash is the hash of the signature scheme: "sha256", "sha384" or "sha512".
	Hash string `json:"hash"`
	// Message is what sign and generate sign (base64 in JSON).
	Message []byte `json:"message,omitempty"`
	// TimeoutMillis bounds the provider calls; 0 means none.
	TimeoutMillis int64 `json:"timeoutMillis,omitempty"`
}

// Response is the helper's answer: an Error, or the op's results.
type Response struct {
	// Version is the protocol version the helper speaks.
	Version int `json:"version"`
	// PublicKeyPEM is the key's public key (a PEM "PUBLIC KEY" block).
	PublicKeyPEM string `json:"publicKeyPEM,omitempty"`
	// Signature is the signature of Message (sign, generate).
	Signature []byte `json:"signature,omitempty"`
	// Created reports that generate created the key (rather than adopted it).
	Created bool `json:"created,omitempty"`
	// Error is set when the operation failed.
	Error *Error `json:"error,omitempty"`
}

// Error codes the helper sets; the plugin branches on them.
const (
	// CodeUnsupported: the URI names a provider the helper does not have.
	CodeUnsupported = "unsupported-provider"
	// CodeBadRequest: the request is malformed or of another version.
	CodeBadRequest = "bad-request"
	// CodeTimeout: the provider did not answer within TimeoutMillis.
	CodeTimeout = "timeout"
	// CodeProvider: the provider refused or failed (the message says why).
	CodeProvider = "provider"
)

// Error is a failure the helper reports.
type Error struct {
	// Code classifies it (Code* constants).
	Code string `json:"code"`
	// Message is the reason, from the provider when it is the provider's.
	Message string `json:"message"`
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// ErrProtocol is returned when the helper's answer is not a valid Response
// of this Version (another program under the helper's name, a helper of
// another release, a crash).
var ErrProtocol = errors.New("the KMS helper's answer is not a valid response")

// Hashes are the values of Request.Hash.
var Hashes = []string{"sha256", "sha384", "sha512"}

// Call runs the helper at path, which must be absolute, with req and
// returns its response, or an *Error the helper reported, or an error
// (ErrProtocol, the context's) of its own. env is the helper's environment
// (the provider SDKs read their credentials from it). The helper is killed
// when ctx ends.
func Call(ctx context.Context, path string, req Request, env []string) (*Response, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("KMS helper %q: not an absolute path", path)
	}
	if len(req.Message) > MaxMessage {
		return nil, fmt.Errorf("KMS helper: message of %d bytes, more than %d", len(req.Message), MaxMessage)
	}
	req.Version = Version
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMillis = max(time.Until(dl).Milliseconds(), 1)
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var stdout limitedBuffer
	stdout.max = MaxResponse
	var stderr limitedBuffer
	stderr.max = maxStderr
	cmd := exec.CommandContext(ctx, path)
	// Its name, whatever path it was found by (the plugin runs it by its
	// path with symlinks resolved).
	cmd.Args[0] = HelperName
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A helper that leaves a child holding its pipes does not hold us.
	cmd.WaitDelay = 2 * time.Second
	runErr := cmd.Run()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("KMS helper %s: %w", path, err)
	}
	if stdout.over {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrProtocol, MaxResponse)
	}
	resp, err := Decode(stdout.Bytes())
	if err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("KMS helper %s: %w%s", path, runErr, stderrTail(stderr.Bytes()))
		}
		return nil, fmt.Errorf("%w%s", err, stderrTail(stderr.Bytes()))
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return resp, nil
}

// Decode parses a response and checks its version and shape.
func Decode(b []byte) (*Response, error) {
	var resp Response
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: more than one JSON value", ErrProtocol)
	}
	if resp.Version != Version {
		return nil, fmt.Errorf("%w: protocol version %d, this plugin speaks %d (install the plugin and %s of one release)", ErrProtocol, resp.Version, Version, HelperName)
	}
	if resp.Error != nil && (resp.Error.Code == "" || resp.PublicKeyPEM != "" || resp.Signature != nil) {
		return nil, fmt.Errorf("%w: an error with a code and nothing else was expected", ErrProtocol)
	}
	return &resp, nil
}

// Encode writes resp as one line of JSON (the helper's side).
func Encode(w io.Writer, resp *Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// DecodeRequest parses a request (the helper's side) and checks its version,
// operation, hash and size.
func DecodeRequest(r io.Reader) (*Request, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxRequest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRequest {
		return nil, fmt.Errorf("request of more than %d bytes", MaxRequest)
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if dec.More() {
		return nil, errors.New("request: more than one JSON value")
	}
	if req.Version != Version {
		return nil, fmt.Errorf("request of protocol version %d, this %s speaks %d (install the plugin and %s of one release)", req.Version, HelperName, Version, HelperName)
	}
	switch req.Op {
	case OpPublicKey, OpSign, OpGenerate:
	default:
		return nil, fmt.Errorf("unknown op %q", req.Op)
	}
	if !slices.Contains(Hashes, req.Hash) {
		return nil, fmt.Errorf("hash %q: want one of %s", req.Hash, strings.Join(Hashes, ", "))
	}
	if len(req.Message) > MaxMessage {
		return nil, fmt.Errorf("message of %d bytes, more than %d", len(req.Message), MaxMessage)
	}
	if (req.Op == OpPublicKey) != (req.Message == nil) {
		return nil, fmt.Errorf("op %s: message %s", req.Op, map[bool]string{true: "not expected", false: "missing"}[req.Message != nil])
	}
	if req.TimeoutMillis < 0 {
		return nil, errors.New("negative timeoutMillis")
	}
	return &req, nil
}

// stderrTail returns the helper's stderr as an error suffix, or "".
func stderrTail(b []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if s == "" {
		return ""
	}
	return " (its stderr: " + s + ")"
}

// limitedBuffer keeps up to max bytes and records that more came. (It does
// not embed bytes.Buffer: io.Copy would use the promoted ReadFrom and
// bypass the limit.)
type limitedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room < len(p) {
		l.over = true
		if room > 0 {
			l.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return l.buf.Write(p)
}

// Bytes returns what was kept.
func (l *limitedBuffer) Bytes() []byte { return l.buf.Bytes() }
