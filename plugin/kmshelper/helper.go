// Package kmshelper is notarize-kms, the plugin's KMS helper: it links
// sigstore's four KMS providers (AWS KMS, Google Cloud KMS, Azure Key Vault,
// HashiCorp Vault transit) and their SDKs, answers one kmswire.Request on
// stdin with one kmswire.Response on stdout, and exits.
//
// The providers live here, in a separate executable, because the plugin runs
// on every `docker notarize verify` and their SDKs' package initialisation
// (about 110 packages, 1.4 MB of allocation, regexp compiles) was the largest
// start-up cost left in it; only `key generate --kms` and signing with a KMS
// key run the helper. Only the four schemes are served: sigstore's kms.Get
// would run a program "sigstore-kms-SCHEME" from PATH for any other, and the
// helper never does.
package kmshelper

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigkms "github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/notarize/docker-notarize/plugin/kmswire"

	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"        // awskms://
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"      // azurekms://
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"        // gcpkms://
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault" // hashivault://
)

// Providers are the URI schemes the helper serves.
var Providers = []string{"awskms", "gcpkms", "azurekms", "hashivault"}

// Main runs the helper with the process's arguments, stdin and stdout and
// returns its exit code: 0 when the operation succeeded, 1 when it answered
// an error, 2 on a usage error (it takes no arguments).
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 1 {
		fmt.Fprintf(stderr, "usage: %s < REQUEST\n\n%s is docker-notarize's KMS helper (protocol version %d): the plugin runs it,\n"+
			"by its absolute path next to the plugin, for keys held by %s.\nIt reads one JSON request on stdin and writes one JSON response on stdout.\n",
			kmswire.HelperName, kmswire.HelperName, kmswire.Version, strings.Join(Providers, ", "))
		return 2
	}
	resp := Serve(context.Background(), stdin)
	if err := kmswire.Encode(stdout, resp); err != nil {
		fmt.Fprintf(stderr, "%s: writing the response: %v\n", kmswire.HelperName, err)
		return 1
	}
	if resp.Error != nil {
		return 1
	}
	return 0
}

// Serve reads one request from r and performs it.
func Serve(ctx context.Context, r io.Reader) *kmswire.Response {
	req, err := kmswire.DecodeRequest(r)
	if err != nil {
		return fail(kmswire.CodeBadRequest, err)
	}
	scheme, rest, ok := strings.Cut(req.URI, "://")
	if !ok || !slices.Contains(Providers, scheme) || rest == "" {
		return fail(kmswire.CodeUnsupported, fmt.Errorf("key URI %q: not a key of a provider this helper has (%s)", uriHead(req.URI), strings.Join(Providers, ", ")))
	}
	if req.TimeoutMillis > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
		defer cancel()
	}
	// Not every SDK honours the context (Vault's client retries on its own
	// clock): the answer is given at the deadline whether or not the call
	// has returned, and the process exits with it.
	type result struct {
		resp *kmswire.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := perform(ctx, req)
		done <- result{resp, err}
	}()
	var out result
	select {
	case out = <-done:
	case <-ctx.Done():
		select {
		case out = <-done: // its own error, if it has one at once
		case <-time.After(50 * time.Millisecond):
			out.err = fmt.Errorf("no answer from the provider: %w", ctx.Err())
		}
	}
	if out.err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fail(kmswire.CodeTimeout, out.err)
		}
		return fail(kmswire.CodeProvider, out.err)
	}
	out.resp.Version = kmswire.Version
	return out.resp
}

// perform runs req against its provider.
func perform(ctx context.Context, req *kmswire.Request) (*kmswire.Response, error) {
	sv, err := sigkms.Get(ctx, req.URI, hashOf(req.Hash))
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	resp := &kmswire.Response{}
	var pub crypto.PublicKey
	switch req.Op {
	case kmswire.OpGenerate:
		var createErr error
		pub, createErr = sv.CreateKey(ctx, sv.DefaultAlgorithm())
		if createErr != nil {
			// A key named by ID or ARN rather than by alias cannot be
			// created, only adopted.
			if pub, err = sv.PublicKey(options.WithContext(ctx)); err != nil {
				return nil, fmt.Errorf("generate: %w; adopting it as an existing key: %w", createErr, err)
			}
		} else {
			resp.Created = true
		}
	default:
		if pub, err = sv.PublicKey(options.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	resp.PublicKeyPEM = string(pemBytes)
	if req.Op == kmswire.OpSign || req.Op == kmswire.OpGenerate {
		if resp.Signature, err = sv.SignMessage(bytes.NewReader(req.Message), options.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
	}
	return resp, nil
}

func hashOf(name string) crypto.Hash {
	switch name {
	case "sha384":
		return crypto.SHA384
	case "sha512":
		return crypto.SHA512
	default:
		return crypto.SHA256
	}
}

func fail(code string, err error) *kmswire.Response {
	return &kmswire.Response{Version: kmswire.Version, Error: &kmswire.Error{Code: code, Message: err.Error()}}
}

// uriHead is uri up to its first query or attribute separator, for errors.
func uriHead(uri string) string {
	if i := strings.IndexAny(uri, ";?&"); i >= 0 {
		return uri[:i] + "…"
	}
	return uri
}

// Run is Main on the process: os.Args, stdin, stdout, stderr.
func Run() int { return Main(os.Args, os.Stdin, os.Stdout, os.Stderr) }
