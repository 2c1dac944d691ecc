package notarize

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// MaxEntrySize bounds the serialized ledger entry (envelope plus public key):
// a C2SP tlog-tiles entry holds at most 65,535 bytes.
const MaxEntrySize = 1<<16 - 1

// ErrBadEntry is returned (wrapped) for an entry that does not parse.
var ErrBadEntry = errors.New("bad entry")

// ErrBadSignature is returned (wrapped) when an envelope does not verify under
// the key it carries, or the key is not acceptable.
var ErrBadSignature = errors.New("bad signature")

// Entry is what the ledger stores: a DSSE envelope over a statement and the
// PEM public key that signed it, so any replica can check it on its own.
type Entry struct {
	Envelope  ssldsse.Envelope `json:"envelope"`
	PublicKey string           `json:"publicKey"`
}

// Verified is an entry whose signature has been checked and whose statement
// has been parsed and validated.
type Verified struct {
	Statement *Statement
	KeyID     string // hex SHA-256 of the signer's DER SubjectPublicKeyInfo
	PublicKey crypto.PublicKey
	// Payload is the exact statement bytes that were signed.
	Payload []byte

	// The signer's key when VerifyWith parsed it (cache did not hold it),
	// for KeyCache.Remember.
	parsed *cachedKey
	cache  *KeyCache
}

// identityDomain separates statement identities from other SHA-256 uses.
const identityDomain = "docker-notarize statement identity v1\n"

// Identity returns the statement identity of a verified entry: a SHA-256
// over the signer's key ID and the exact signed payload. Two entries with
// the same identity are the same statement by the same key, whatever their
// signature bytes (ECDSA signatures are randomized, and a signature has
// more than one valid encoding), so the ledger records a statement once and
// answers any replay of it with the existing entry.
func (v *Verified) Identity() [32]byte {
	h := sha256.New()
	h.Write([]byte(identityDomain))
	h.Write([]byte(v.KeyID))
	h.Write([]byte{'\n'})
	h.Write(v.Payload)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// KeyID returns the hex SHA-256 of pub's DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// ParsePublicKey decodes one PEM public key and checks it is a kind signers
// may use: ECDSA P-256/P-384/P-521, Ed25519, or RSA of 2048, 3072 or 4096 bits.
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrBadSignature, err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return nil, fmt.Errorf("%w: unsupported ECDSA curve", ErrBadSignature)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
	default:
		return nil, fmt.Errorf("%w: unsupported public key type %T", ErrBadSignature, pub)
	}
	if err := cryptoutils.ValidatePubKey(pub); err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrBadSignature, err)
	}
	return pub, nil
}

// HashFor returns the hash a signature by pub is made and checked with: SHA-384
// for ECDSA P-384, SHA-512 for P-521, SHA-256 otherwise (Ed25519 hashes
// internally and ignores it). Signers must use it so that Verify agrees.
func HashFor(pub crypto.PublicKey) crypto.Hash {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P384():
			return crypto.SHA384
		case elliptic.P521():
			return crypto.SHA512
		}
	}
	return crypto.SHA256
}

// Sign validates st, wraps it in a DSSE envelope signed by signer and returns
// the ledger entry, in its one accepted encoding (see ErrNotCanonical): the
// envelope's keyid is the signer's KeyID, an ECDSA signature is in low-S form
// and the public key is canonical PEM.
func Sign(ctx context.Context, signer signature.Signer, st *Statement) (*Entry, error) {
	payload, err := st.Marshal()
	if err != nil {
		return nil, err
	}
	pub, err := signer.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("sign: public key: %w", err)
	}
	keyID, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	raw, err := dsse.WrapSigner(signer, PayloadType).SignMessage(bytes.NewReader(payload), options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	e := &Entry{PublicKey: string(pubPEM)}
	if err := json.Unmarshal(raw, &e.Envelope); err != nil {
		return nil, fmt.Errorf("sign: decode envelope: %w", err)
	}
	for i := range e.Envelope.Signatures {
		s := &e.Envelope.Signatures[i]
		s.KeyID = keyID
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return nil, fmt.Errorf("sign: decode signature: %w", err)
		}
		if sig, err = CanonicalSignature(pub, sig); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		s.Sig = base64.StdEncoding.EncodeToString(sig)
	}
	if _, err := e.Verify(); err != nil {
		return nil, fmt.Errorf("sign: signature does not verify: %w", err)
	}
	return e, nil
}

// Marshal returns the entry's canonical JSON: the bytes that go into the log.
// Two entries with the same envelope and key marshal to the same bytes, and
// ParseEntry accepts no other spelling of them.
func (e *Entry) Marshal() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("marshal entry: %w", err)
	}
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadEntry, len(b), MaxEntrySize)
	}
	return b, nil
}

// ParseEntry decodes an entry from JSON, bounded in size, refusing unknown
// fields, invalid UTF-8 (encoding/json would quietly replace it) and any
// spelling but the entry's own Marshal output (ErrNotCanonical), so that
// one entry has one encoding. It does not check the signature: call Verify.
// A log also holds map-root entries (IsMapRoot, ParseMapRoot), which it
// refuses: they are no statements.
func ParseEntry(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadEntry, len(b), MaxEntrySize)
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: entry is not valid UTF-8", ErrBadEntry)
	}
	if e, ok := scanCanonicalEntry(b); ok && e.hasRequired() {
		if canon, err := e.Marshal(); err == nil && bytes.Equal(canon, b) {
			return &e, nil
		}
	}
	// As in ParseStatement, the member walk only explains a refusal: the
	// canonical comparison accepts nothing it would refuse.
	var e Entry
	derr := decodeOne(b, &e)
	if derr == nil {
		if !e.hasRequired() {
			if werr := explainJSON(b, reflect.TypeFor[Entry]()); werr != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadEntry, werr)
			}
			return nil, fmt.Errorf("%w: envelope payloadType, payload and publicKey are required", ErrBadEntry)
		}
		canon, err := e.Marshal()
		if err != nil {
			return nil, err
		}
		if bytes.Equal(canon, b) {
			return &e, nil
		}
	}
	if werr := explainJSON(b, reflect.TypeFor[Entry]()); werr != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, werr)
	}
	if derr != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, derr)
	}
	return nil, notCanonical(ErrBadEntry, "entry JSON must be exactly its canonical form (Go encoding/json: members in field order, no whitespace, Go's string escapes)")
}

// hasRequired reports whether the members every entry needs are set.
func (e *Entry) hasRequired() bool {
	return e.Envelope.PayloadType != "" && e.Envelope.Payload != "" && e.PublicKey != ""
}

// Verify checks that the entry is in its one accepted encoding (see
// ErrNotCanonical), that the envelope carries exactly one signature, made
// by the entry's own public key and naming its key ID, over the DSSE
// pre-authentication encoding, that the payload type is an in-toto
// statement and that the statement is valid. It returns the statement and
// the signer's key ID.
func (e *Entry) Verify() (*Verified, error) {
	return e.verify(true, nil)
}

// VerifyLogged is Verify for an entry read from a ledger's log rather than
// submitted to it: it also accepts an ECDSA signature in its high-S form.
// Ledgers of earlier versions logged either form (about half of them
// high-S), and what they logged is an authentic signature either way; the
// low-S rule exists so that nobody can append a statement twice, and the
// ledger applies it to every submission (Verify). Every other encoding rule
// holds for logged entries too.
func (e *Entry) VerifyLogged() (*Verified, error) {
	return e.verify(false, nil)
}

// VerifyWith is Verify with the signer's key taken from keys when it
// parsed the same PEM text before (see KeyCache); every check still runs.
// A key keys does not hold is parsed and not remembered: its caller
// remembers it (KeyCache.Remember) once it has accepted the entry too (a
// ledger: logged it), so that submissions it refuses (a ledger's
// strangers, say) do not take the places of its signers' keys.
func (e *Entry) VerifyWith(keys *KeyCache) (*Verified, error) {
	return e.verify(true, keys)
}

// VerifyLoggedWith is VerifyLogged with the signer's key taken from keys
// when it parsed the same PEM text before (see KeyCache); every check
// still runs, and the key is remembered once the entry verified. A
// replica checking a whole log pays the key's parse once per key instead
// of once per entry.
func (e *Entry) VerifyLoggedWith(keys *KeyCache) (*Verified, error) {
	return e.verify(false, keys)
}

func (e *Entry) verify(lowS bool, keys *KeyCache) (*Verified, error) {
	if e.Envelope.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: payload type %q, want %q", ErrBadEntry, truncate(e.Envelope.PayloadType, 80), PayloadType)
	}
	if n := len(e.Envelope.Signatures); n != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature, got %d", ErrBadSignature, n)
	}
	payload, err := decodeStdBase64(ErrBadEntry, "payload", e.Envelope.Payload)
	if err != nil {
		return nil, err
	}
	sig, err := decodeStdBase64(ErrBadSignature, "signature", e.Envelope.Signatures[0].Sig)
	if err != nil {
		return nil, err
	}
	k, held, err := e.signerKey(keys)
	if err != nil {
		return nil, err
	}
	pub, keyID := k.pub, k.keyID
	if !signatureFormOK(pub, sig, lowS) {
		if err := checkSignatureForm(pub, sig, lowS); err != nil {
			return nil, err
		}
	}
	if t := keys.p256Table(k); t != nil {
		// What k.verifier does for a P-256 key (SHA-256 of the PAE, then
		// crypto/ecdsa.VerifyASN1), with the key's table.
		digest := sha256.Sum256(ssldsse.PAE(PayloadType, payload))
		if !t.VerifyASN1(digest[:], sig) {
			return nil, fmt.Errorf("%w: envelope does not verify under its public key %s: invalid signature when validating ASN.1 encoded signature", ErrBadSignature, keyID)
		}
	} else if err := k.verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(ssldsse.PAE(PayloadType, payload))); err != nil {
		return nil, fmt.Errorf("%w: envelope does not verify under its public key %s: %v", ErrBadSignature, keyID, err)
	}
	st, err := ParseStatement(payload)
	if err != nil {
		return nil, err
	}
	v := &Verified{Statement: st, KeyID: keyID, PublicKey: pub, Payload: payload}
	switch {
	case keys == nil:
	case !lowS: // a logged entry (VerifyLoggedWith), accepted: its key is remembered and counts
		if !held {
			keys.add(k)
		}
		keys.verified(k)
	case !held:
		// A submission: its key is remembered once its caller accepts
		// the entry (KeyCache.Remember), and the entry counts once
		// appended (KeyCache.Admitted), or when a log's follower checks
		// it (VerifyLoggedWith).
		v.parsed, v.cache = k, keys
	}
	return v, nil
}

// signerKey parses the entry's public key, which must be canonical PEM (or
// takes it from keys, which may be nil, when it parsed the same text
// before: held), and checks the signature's keyid names it.
func (e *Entry) signerKey(keys *KeyCache) (*cachedKey, bool, error) {
	k, held, err := keys.lookup(e.PublicKey)
	if err != nil {
		return nil, false, err
	}
	switch id := e.Envelope.Signatures[0].KeyID; {
	case id == "":
		return nil, false, notCanonical(ErrBadSignature, "signature keyid is missing; it must be the key ID %s", k.keyID)
	case id != k.keyID:
		return nil, false, fmt.Errorf("%w: signature keyid %q does not match the public key (%s)", ErrBadSignature, truncate(id, 80), k.keyID)
	}
	return k, held, nil
}

// errBadVerifier is the error of a key no signature verifier takes.
func errBadVerifier(err error) error {
	return fmt.Errorf("%w: %v", ErrBadSignature, err)
}
