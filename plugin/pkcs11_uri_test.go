package plugin

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePKCS11URI(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		ok   bool
		want string // String() of the parse, without pin-value
	}{
		{"pkcs11:token=t;object=o", true, "pkcs11:token=t;object=o"},
		{"pkcs11:token=My%20Token;object=rel%3Bease;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
			true, "pkcs11:token=My%20Token;object=rel%3Bease;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so"},
		{"pkcs11:serial=abc;id=01;type=private?pin-source=file:/run/pin", true, "pkcs11:serial=abc;id=01;type=private?pin-source=file%3A/run/pin"},
		{"pkcs11:slot-id=3;object=o;manufacturer=SoftHSM%20project", true, "pkcs11:slot-id=3;object=o;manufacturer=SoftHSM%20project"},
		{"pkcs11:token=t;object=o;x-vendor=1", true, "pkcs11:token=t;object=o;x-vendor=1"},
		{"PKCS11:token=t;object=o", true, "pkcs11:token=t;object=o"},
		{"pkcs11:object=o", false, ""},                                            // no token
		{"pkcs11:token=t", false, ""},                                             // no object
		{"pkcs11:token=t;object=o;type=public", false, ""},                        // not a signing key
		{"pkcs11:token=t;object=o;tokn=x", false, ""},                             // misspelt attribute
		{"pkcs11:token=t;object=o;token=u", false, ""},                            // given twice
		{"pkcs11:token=t;object=o?pin-value=1&pin-source=/f", false, ""},          // both PIN sources
		{"pkcs11:token=t;object=o?module-name=softhsm2", false, ""},               // not supported
		{"pkcs11:token=t;object=%zz", false, ""},                                  // bad escape
		{"pkcs11:token=t;object", false, ""},                                      // no '='
		{"pkcs11:slot-id=-1;object=o", false, ""},                                 // bad slot
		{"awskms:///alias/x", false, ""},                                          // another scheme
		{"pkcs11:token=t;object=" + strings.Repeat("a", maxPKCS11URI), false, ""}, // too long
	} {
		t.Run(tc.uri[:min(len(tc.uri), 60)], func(t *testing.T) {
			u, err := parsePKCS11URI(tc.uri)
			if (err == nil) != tc.ok {
				t.Fatalf("parsePKCS11URI = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadPKCS11URI) {
					t.Fatalf("error %v is not ErrBadPKCS11URI", err)
				}
				return
			}
			if got := u.String(); got != tc.want {
				t.Fatalf("String() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPKCS11PIN(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	u, err := parsePKCS11URI("pkcs11:token=t;object=o")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.pin(env(nil)); err == nil || !strings.Contains(err.Error(), EnvPKCS11PIN) {
		t.Fatalf("no PIN anywhere: %v", err)
	}
	if pin, err := u.pin(env(map[string]string{EnvPKCS11PIN: "9"})); pin != "9" || err != nil {
		t.Fatalf("PIN from the environment: %q, %v", pin, err)
	}
	if _, err := u.module(env(nil)); err == nil || !strings.Contains(err.Error(), EnvPKCS11Module) {
		t.Fatalf("no module anywhere: %v", err)
	}
	for _, rel := range []string{"libsofthsm2.so", "./evil.so", "lib/evil.so"} {
		if _, err := u.module(env(map[string]string{EnvPKCS11Module: rel})); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
			t.Fatalf("relative module %q from the environment: %v", rel, err)
		}
		ur, err := parsePKCS11URI("pkcs11:token=t;object=o?module-path=" + rel)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ur.module(env(nil)); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
			t.Fatalf("relative module-path %q: %v", rel, err)
		}
	}
	if m, err := u.module(env(map[string]string{EnvPKCS11Module: "/usr/lib/softhsm/libsofthsm2.so"})); err != nil || m != "/usr/lib/softhsm/libsofthsm2.so" {
		t.Fatalf("absolute module from the environment: %q, %v", m, err)
	}
	empty := writeTestFile(t, "empty", nil)
	u2, err := parsePKCS11URI("pkcs11:token=t;object=o?pin-source=" + empty)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u2.pin(env(map[string]string{EnvPKCS11PIN: "9"})); err == nil {
		t.Fatal("an empty pin-source was accepted (or silently replaced by the environment)")
	}
}

func TestRedactKeyURI(t *testing.T) {
	for in, want := range map[string]string{
		"pkcs11:token=t;object=o?pin-value=1234":                     "pkcs11:token=t;object=o",
		"pkcs11:token=t;object=o?module-path=/m.so&pin-value=1234":   "pkcs11:token=t;object=o?module-path=/m.so",
		"pkcs11:token=t;object=o?pin-%76alue=1234&module-path=/m.so": "pkcs11:token=t;object=o?module-path=/m.so",
		"pkcs11:token=t;object=o?PIN-VALUE=1234":                     "pkcs11:token=t;object=o",
		"awskms://127.0.0.1:4566/alias/x":                            "awskms://127.0.0.1:4566/alias/x",
	} {
		if got := redactKeyURI(in); got != want {
			t.Errorf("redactKeyURI(%s) = %s, want %s", in, got, want)
		}
	}
}

// FuzzParsePKCS11URI: the parser never panics, a parsed URI prints without
// its pin-value, and what it prints parses back to the same thing.
func FuzzParsePKCS11URI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=t;object=o",
		"pkcs11:token=My%20Token;object=o;id=%01?module-path=/x.so&pin-value=12",
		"pkcs11:slot-id=1;id=%ff;type=private?pin-source=file:/p",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parsePKCS11URI(s)
		if err != nil {
			return
		}
		out := u.String()
		if u.pinValue != "" && strings.Contains(out, "pin-value") {
			t.Fatalf("String() kept the pin-value: %s", out)
		}
		u2, err := parsePKCS11URI(out)
		if err != nil {
			t.Fatalf("String() %q does not parse: %v", out, err)
		}
		if out2 := u2.String(); out2 != out {
			t.Fatalf("round trip: %q then %q", out, out2)
		}
	})
}
