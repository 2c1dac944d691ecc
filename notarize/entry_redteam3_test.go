package notarize_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// strictParseEntry is ParseEntry's rule written out without its fast
// path, from encoding/json alone: one JSON value with no unknown member,
// valid UTF-8, bounded, the required members set, and exactly the bytes
// Marshal gives back.
func strictParseEntry(b []byte) (*notarize.Entry, bool) {
	if len(b) > notarize.MaxEntrySize || !utf8.Valid(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var e notarize.Entry
	if err := dec.Decode(&e); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	if e.Envelope.PayloadType == "" || e.Envelope.Payload == "" || e.PublicKey == "" {
		return nil, false
	}
	canon, err := e.Marshal()
	if err != nil || !bytes.Equal(canon, b) {
		return nil, false
	}
	return &e, true
}

// checkSameAsStrict fails when ParseEntry (with its scanner fast path)
// and the strict rule disagree about b.
func checkSameAsStrict(t *testing.T, b []byte) {
	t.Helper()
	got, err := notarize.ParseEntry(b)
	want, ok := strictParseEntry(b)
	switch {
	case err == nil && !ok:
		t.Fatalf("BYPASS: ParseEntry accepts %q, which is not the canonical encoding of what it reads", b)
	case err != nil && ok:
		t.Fatalf("ParseEntry refuses the canonical entry %q: %v", b, err)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("BYPASS: ParseEntry reads %q as %+v, encoding/json as %+v", b, got, want)
	case err != nil && !errors.Is(err, notarize.ErrBadEntry):
		t.Fatalf("ParseEntry(%q) = %v, want ErrBadEntry", b, err)
	}
}

// redteamEntry returns a real signed entry's canonical bytes.
func redteamEntry(t testing.TB) []byte {
	t.Helper()
	b, err := notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedteam3ParseEntrySpellings: spellings of a real entry that the
// scanner's layout nearly matches — escapes other than \n, a \u000a for
// the PEM's newlines, an escaped slash, members spelled in another case
// (encoding/json matches them case-insensitively), a member twice (the
// last wins in encoding/json), whitespace, a BOM, trailing data, NUL,
// unicode line separators, an empty or null signature list, two
// signatures — are accepted by ParseEntry exactly when the strict rule
// accepts them, read the same, and never verify unless canonical.
func TestRedteam3ParseEntrySpellings(t *testing.T) {
	good := string(redteamEntry(t))
	pemStart := strings.Index(good, `"publicKey":"`) + len(`"publicKey":"`)
	sigs := good[strings.Index(good, `"signatures":[`)+len(`"signatures":[`) : strings.Index(good, `]},"publicKey"`)]
	variants := map[string]string{
		"canonical":                      good,
		"\\u000a for \\n in the PEM":     strings.Replace(good, `\n`, `\u000a`, 1),
		"escaped slash in the payload":   strings.Replace(good, `"payload":"`, `"payload":"\/`, 1),
		"\\r\\n in the PEM":              strings.Replace(good, `\n`, `\r\n`, 1),
		"raw newline in the PEM":         strings.Replace(good, `\n`, "\n", 1),
		"\\\\n in the PEM":               strings.Replace(good, `\n`, `\\n`, 1),
		"escaped quote":                  good[:pemStart] + `\"` + good[pemStart:],
		"member in another case":         strings.Replace(good, `"publicKey"`, `"PublicKey"`, 1),
		"envelope in another case":       strings.Replace(good, `"envelope"`, `"Envelope"`, 1),
		"keyid in another case":          strings.Replace(good, `"keyid"`, `"keyID"`, 1),
		"publicKey twice, last wins":     strings.TrimSuffix(good, `}`) + `,"publicKey":"x"}`,
		"payload twice":                  strings.Replace(good, `"payload":"`, `"payload":"AAAA","payload":"`, 1),
		"space after colon":              strings.Replace(good, `"publicKey":`, `"publicKey": `, 1),
		"leading BOM":                    "\ufeff" + good,
		"trailing newline":               good + "\n",
		"trailing second value":          good + `{}`,
		"trailing NUL":                   good + "\x00",
		"U+2028 in the PEM":              good[:pemStart] + "\u2028" + good[pemStart:],
		"escaped U+2028 in the PEM":      good[:pemStart] + `\u2028` + good[pemStart:],
		"< in the PEM":                   good[:pemStart] + "<" + good[pemStart:],
		"\\u003c in the PEM":             good[:pemStart] + `\u003c` + good[pemStart:],
		"empty signature list":           strings.Replace(good, sigs, "", 1),
		"null signature list":            strings.Replace(good, "["+sigs+"]", "null", 1),
		"two signatures":                 strings.Replace(good, sigs, sigs+","+sigs, 1),
		"trailing comma in signatures":   strings.Replace(good, sigs, sigs+",", 1),
		"a signature member more":        strings.Replace(good, `"sig":`, `"x":1,"sig":`, 1),
		"number for payloadType":         strings.Replace(good, `"payloadType":"application/vnd.in-toto+json"`, `"payloadType":1`, 1),
		"unterminated":                   good[:len(good)-2],
		"huge padded":                    strings.Replace(good, `"payload":"`, `"payload":"`+strings.Repeat("A", notarize.MaxEntrySize), 1),
		"payloadType with escaped plus":  strings.Replace(good, `in-toto+json`, `in-toto\u002bjson`, 1),
		"payloadType empty":              strings.Replace(good, `"payloadType":"application/vnd.in-toto+json"`, `"payloadType":""`, 1),
		"backslash at the end of a name": strings.Replace(good, `"keyid":"`, `"keyid":"\\`, 1),
	}
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			checkSameAsStrict(t, []byte(v))
			e, err := notarize.ParseEntry([]byte(v))
			if err != nil || v == good {
				return
			}
			if _, err := e.VerifyLogged(); err == nil {
				t.Fatalf("BYPASS: the spelling %q verifies as a second encoding of one entry", name)
			}
		})
	}
}

// FuzzRedteam3ParseEntry: ParseEntry, fast path included, accepts exactly
// what the strict encoding/json rule accepts and reads it the same.
func FuzzRedteam3ParseEntry(f *testing.F) {
	good := redteamEntry(f)
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`\n`), []byte(`\u000a`), 1))
	f.Add(bytes.Replace(good, []byte(`"publicKey"`), []byte(`"PublicKey"`), 1))
	f.Add([]byte(`{"envelope":{"payloadType":"a","payload":"b","signatures":[{"keyid":"k","sig":"c"}]},"publicKey":"p\n"}`))
	f.Add([]byte(`{"envelope":{"payloadType":"a","payload":"b","signatures":[{"keyid":"k","sig":"c"}]},"publicKey":"p\\n"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSameAsStrict(t, b)
	})
}

// TestRedteam3KeyCacheOtherPEM: once a key's canonical PEM is cached, an
// entry carrying the same key in another PEM spelling (CRLF, a header, a
// comment line, text around it, the key of another signer with the cached
// key's keyid) is refused with the cache as without it, and a refused
// text never enters the cache.
func TestRedteam3KeyCacheOtherPEM(t *testing.T) {
	sv := notarizetest.NewSigner(t)
	honest := notarizetest.Entry(t, sv, digestA, notarize.StatusTrusted, t0)
	other := notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)
	keys := notarize.NewKeyCache(4)
	if _, err := verifyLoggedWith(marshal(t, honest), keys); err != nil {
		t.Fatal(err)
	}
	pemText := honest.PublicKey
	body := strings.TrimSuffix(strings.TrimPrefix(pemText, "-----BEGIN PUBLIC KEY-----\n"), "-----END PUBLIC KEY-----\n")
	for name, p := range map[string]string{
		"CRLF":              strings.ReplaceAll(pemText, "\n", "\r\n"),
		"no final newline":  strings.TrimSuffix(pemText, "\n"),
		"a PEM header":      "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\n" + body + "-----END PUBLIC KEY-----\n",
		"text before":       "key:\n" + pemText,
		"text after":        pemText + "x",
		"two PEM blocks":    pemText + other.PublicKey,
		"rewrapped":         "-----BEGIN PUBLIC KEY-----\n" + strings.ReplaceAll(body, "\n", "") + "\n-----END PUBLIC KEY-----\n",
		"other key's PEM":   other.PublicKey,
		"RSA PUBLIC KEY":    strings.ReplaceAll(pemText, "PUBLIC KEY", "RSA PUBLIC KEY"),
		"trailing space":    strings.Replace(pemText, "-----\n", "----- \n", 1),
		"lower-case header": strings.Replace(pemText, "BEGIN", "begin", 1),
	} {
		t.Run(name, func(t *testing.T) {
			m := *honest
			m.PublicKey = p
			b := marshal(t, &m)
			before := keys.Len()
			_, errNo := verifyLoggedWith(b, nil)
			_, errCached := verifyLoggedWith(b, keys)
			if errCached == nil {
				t.Fatalf("BYPASS: the cached key verified an entry whose PEM is %s", name)
			}
			if errNo == nil {
				t.Fatalf("without the cache the entry whose PEM is %s verifies", name)
			}
			if p != other.PublicKey && keys.Len() > before {
				t.Fatalf("a refused PEM text entered the cache (%d keys, %d before)", keys.Len(), before)
			}
		})
	}
}

// TestRedteam3KeyCacheFlood: a log full of distinct keys, valid and not,
// never grows the cache past its bound; the keys it dropped still verify.
func TestRedteam3KeyCacheFlood(t *testing.T) {
	keys := notarize.NewKeyCache(3)
	var entries [][]byte
	for i := 0; i < 10; i++ {
		entries = append(entries, marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)))
	}
	for round := 0; round < 2; round++ {
		for i, b := range entries {
			if _, err := verifyLoggedWith(b, keys); err != nil {
				t.Fatalf("round %d entry %d: %v", round, i, err)
			}
			if n := keys.Len(); n > 3 {
				t.Fatalf("cache grew to %d keys, bound 3", n)
			}
		}
	}
	good := notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)
	for i := 0; i < 50; i++ {
		m := *good
		m.PublicKey = strings.Replace(good.PublicKey, "-----\n", "-----\n"+strings.Repeat("A", i%7)+"\n", 1)
		if _, err := verifyLoggedWith(marshal(t, &m), keys); err == nil {
			t.Fatalf("a mangled PEM verified (%d)", i)
		}
	}
	if n := keys.Len(); n > 3 {
		t.Fatalf("refused keys grew the cache to %d", n)
	}
}
