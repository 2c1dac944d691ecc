//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"crypto"
	"fmt"
)

// externalKeyFlags are key generate's flags for a key held outside the store.
type externalKeyFlags struct {
	kms    string // --kms URI
	pkcs11 string // --pkcs11 URI
}

func (f externalKeyFlags) set() bool { return f.kms != "" || f.pkcs11 != "" }

// runKeyGenerateExternal creates, or adopts, the key --kms or --pkcs11 names
// in its provider, proves it can sign, and records its public key and URI
// (never a secret) in the store under --name.
func runKeyGenerateExternal(ctx context.Context, dockerCli stdio, opts keyGenerateOptions) error {
	uri, flag := opts.external.kms, "--kms"
	if opts.external.pkcs11 != "" {
		uri, flag = opts.external.pkcs11, "--pkcs11"
	}
	if opts.external.kms != "" && opts.external.pkcs11 != "" {
		return usageError(fmt.Errorf("generate key: give --kms or --pkcs11, not both"))
	}
	provider, err := providerOf(uri)
	if err != nil {
		return usageError(fmt.Errorf("generate key %s: %s: %w", opts.name, flag, err))
	}
	if (provider == ProviderPKCS11) != (flag == "--pkcs11") {
		return usageError(fmt.Errorf("generate key %s: a %s URI goes with --%s", opts.name, provider, map[bool]string{true: "pkcs11", false: "kms"}[provider == ProviderPKCS11]))
	}
	if provider == ProviderPKCS11 {
		if _, err := parsePKCS11URI(uri); err != nil {
			return usageError(fmt.Errorf("generate key %s: %w", opts.name, err))
		}
	}
	ks := opts.root.keyStore()
	if _, err := ks.Public(opts.name); err == nil {
		return fmt.Errorf("generate key: %w: %q in %s", ErrKeyExists, opts.name, ks.Dir)
	}
	var pub crypto.PublicKey
	record := redactKeyURI(uri)
	if provider == ProviderPKCS11 {
		pub, record, err = generatePKCS11Key(ctx, opts.name, uri, opts.root.env.lookupEnv)
	} else {
		timeout, terr := keyTimeout(opts.root.env.lookupEnv)
		if terr != nil {
			return usageError(fmt.Errorf("generate key %s: %w", opts.name, terr))
		}
		pub, err = generateKMS(ctx, opts.name, provider, uri, timeout)
	}
	if err != nil {
		return err
	}
	k, err := ks.AddReference(opts.name, KeyReference{Provider: provider, URI: record}, pub)
	if err != nil {
		return err
	}
	out := dockerCli.Out()
	if _, err := fmt.Fprintf(out, "Added key %s, held by %s\n  key ID:      %s\n  key URI:     %s\n  public key:  %s\n",
		k.Name, provider, k.KeyID, record, k.Path); err != nil {
		return err
	}
	if provider == ProviderPKCS11 {
		_, err = fmt.Fprintf(out, "  PIN:         not stored; when signing it comes from the URI's pin-source or %s\n", EnvPKCS11PIN)
	}
	return err
}

// generatePKCS11Key adopts or generates the token's key, signs once with it,
// and returns its public key and the URI to record.
func generatePKCS11Key(ctx context.Context, name, uri string, lookupEnv func(string) (string, bool)) (crypto.PublicKey, string, error) {
	fail := func(op string, err error) error {
		return &KeyProviderError{Key: name, Provider: ProviderPKCS11, URI: redactKeyURI(uri), Op: op, Err: err}
	}
	s, record, err := generatePKCS11(ctx, uri, lookupEnv)
	if err != nil {
		return nil, "", fail("generate", err)
	}
	defer s.Close()
	pub := s.Public()
	if err := probeSigner(ctx, s, pub); err != nil {
		return nil, "", fail("test signature", err)
	}
	return pub, record, nil
}
