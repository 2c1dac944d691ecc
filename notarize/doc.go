// Package notarize is the pure core of docker notarize: the signed statement
// ("this content digest is TRUSTED / UNTRUSTED / UNSUPPORTED, says key K"),
// its DSSE envelope, the ledger entry that carries envelope and public key,
// signature checks, the status fold and the verdict.
//
// It does no network or file I/O, imports nothing else of this module, and
// never logs. Every other package builds on it.
//
// Formats implemented:
//   - in-toto Statement v1: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
//   - DSSE envelope v1: https://github.com/secure-systems-lab/dsse/blob/master/envelope.md
package notarize
