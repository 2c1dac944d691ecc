package plugin

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Environment variables of PKCS#11 keys.
const (
	// EnvPKCS11Module names the PKCS#11 module (a shared library) for URIs
	// without module-path.
	EnvPKCS11Module = "NOTARIZE_PKCS11_MODULE"
	// EnvPKCS11PIN holds the token's user PIN for URIs without pin-value or
	// pin-source. It is never written to the key store.
	EnvPKCS11PIN = "NOTARIZE_PKCS11_PIN"
)

// maxPKCS11URI bounds a pkcs11: URI; maxPINFile a pin-source file.
const (
	maxPKCS11URI = 4 << 10
	maxPINFile   = 1 << 10
)

// ErrBadPKCS11URI is returned for a pkcs11: URI that is not RFC 7512, or names
// what the plugin cannot use.
var ErrBadPKCS11URI = errors.New("bad pkcs11 URI")

// pkcs11URI is the part of an RFC 7512 PKCS#11 URI the plugin uses: which
// token (serial, label or slot), which key object (label and/or ID), the
// module, and where the PIN comes from.
type pkcs11URI struct {
	token, serial, object string
	id                    []byte
	slotID                *int
	modulePath            string
	pinValue, pinSource   string
	// pathAttrs keeps the other path attributes (manufacturer, model, …) in
	// order, so String gives them back.
	pathAttrs [][2]string
}

// pkcs11PathAttrs are RFC 7512's path attributes; pkcs11QueryAttrs its query
// attributes. Others (except vendor "x-" ones) are refused: a misspelt
// attribute must not widen which key is picked.
var (
	pkcs11PathAttrs = map[string]bool{
		"token": true, "manufacturer": true, "serial": true, "model": true,
		"library-manufacturer": true, "library-description": true, "library-version": true,
		"object": true, "type": true, "id": true,
		"slot-manufacturer": true, "slot-description": true, "slot-id": true,
	}
	pkcs11QueryAttrs = map[string]bool{"pin-source": true, "pin-value": true, "module-name": true, "module-path": true}
)

// parsePKCS11URI parses an RFC 7512 URI: pkcs11:PATH-ATTRS[?QUERY-ATTRS],
// attributes separated by ';' in the path and '&' in the query, values
// percent-encoded. It needs a token (token, serial or slot-id) and a key
// object (object or id); type, when given, must be private.
func parsePKCS11URI(raw string) (*pkcs11URI, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadPKCS11URI, fmt.Sprintf(format, a...))
	}
	if len(raw) > maxPKCS11URI {
		return nil, bad("longer than %d bytes", maxPKCS11URI)
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || !strings.EqualFold(scheme, "pkcs11") {
		return nil, bad("want pkcs11:…")
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &pkcs11URI{}
	seen := map[string]bool{}
	for _, attr := range splitNonEmpty(path, ";") {
		k, v, err := pkcs11Attr(attr)
		if err != nil {
			return nil, bad("%v", err)
		}
		if !pkcs11PathAttrs[k] && !strings.HasPrefix(k, "x-") {
			return nil, bad("unknown path attribute %q", k)
		}
		if seen[k] {
			return nil, bad("attribute %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "token":
			u.token = v
		case "serial":
			u.serial = v
		case "object":
			u.object = v
		case "id":
			u.id = []byte(v)
		case "slot-id":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, bad("slot-id %q is not a number", v)
			}
			u.slotID = &n
		case "type":
			if v != "private" {
				return nil, bad("type=%s: a signing key is type=private", v)
			}
			u.pathAttrs = append(u.pathAttrs, [2]string{k, v})
		default:
			u.pathAttrs = append(u.pathAttrs, [2]string{k, v})
		}
	}
	for _, attr := range splitNonEmpty(query, "&") {
		k, v, err := pkcs11Attr(attr)
		if err != nil {
			return nil, bad("%v", err)
		}
		if !pkcs11QueryAttrs[k] && !strings.HasPrefix(k, "x-") {
			return nil, bad("unknown query attribute %q", k)
		}
		if seen["?"+k] {
			return nil, bad("attribute %q given twice", k)
		}
		seen["?"+k] = true
		switch k {
		case "module-path":
			u.modulePath = v
		case "module-name":
			return nil, bad("module-name is not supported: give module-path=/path/to/module.so (or set %s)", EnvPKCS11Module)
		case "pin-value":
			u.pinValue = v
		case "pin-source":
			u.pinSource = v
		}
	}
	if u.token == "" && u.serial == "" && u.slotID == nil {
		return nil, bad("no token: give token=LABEL, serial=… or slot-id=…")
	}
	if u.object == "" && len(u.id) == 0 {
		return nil, bad("no key object: give object=LABEL and/or id=…")
	}
	if u.pinValue != "" && u.pinSource != "" {
		return nil, bad("both pin-value and pin-source")
	}
	return u, nil
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pkcs11Attr splits one NAME=VALUE attribute and percent-decodes its value.
func pkcs11Attr(attr string) (string, string, error) {
	k, v, ok := strings.Cut(attr, "=")
	if !ok {
		if strings.Contains(strings.ToLower(attr), "pin") {
			// Maybe a PIN with a typo before it: never printed.
			return "", "", errors.New("an attribute has no '=' (not shown: it may hold the PIN)")
		}
		return "", "", fmt.Errorf("attribute %q has no '='", attr)
	}
	dv, err := url.PathUnescape(v)
	if err != nil {
		if strings.Contains(strings.ToLower(k), "pin") {
			return "", "", fmt.Errorf("attribute %q: bad percent-encoding (the value is not shown)", k)
		}
		return "", "", fmt.Errorf("attribute %q: %v", k, err)
	}
	return strings.ToLower(k), dv, nil
}

// String returns the URI without its pin-value: what the key store records.
func (u *pkcs11URI) String() string {
	var path []string
	add := func(k, v string) { path = append(path, k+"="+pkcs11Escape(v)) }
	if u.token != "" {
		add("token", u.token)
	}
	if u.serial != "" {
		add("serial", u.serial)
	}
	if u.slotID != nil {
		add("slot-id", strconv.Itoa(*u.slotID))
	}
	if u.object != "" {
		add("object", u.object)
	}
	if len(u.id) > 0 {
		add("id", string(u.id))
	}
	for _, a := range u.pathAttrs {
		add(a[0], a[1])
	}
	var query []string
	if u.modulePath != "" {
		query = append(query, "module-path="+pkcs11Escape(u.modulePath))
	}
	if u.pinSource != "" {
		query = append(query, "pin-source="+pkcs11Escape(u.pinSource))
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// pkcs11Escape percent-encodes everything but RFC 7512's unreserved
// characters and '/' (kept readable in module paths).
func pkcs11Escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// module returns the PKCS#11 module path: module-path, else
// NOTARIZE_PKCS11_MODULE.
//
// The path must be absolute: a module is a shared library the plugin loads
// and runs, and a relative path would load whatever the current directory
// (a checked-out repository, say) holds under that name.
func (u *pkcs11URI) module(lookupEnv func(string) (string, bool)) (string, error) {
	m, from := u.modulePath, "module-path"
	if m == "" {
		m, _ = lookupEnv(EnvPKCS11Module)
		from = EnvPKCS11Module
	}
	if m == "" {
		return "", fmt.Errorf("no PKCS#11 module: give module-path=… in the URI or set %s", EnvPKCS11Module)
	}
	if !filepath.IsAbs(m) {
		return "", fmt.Errorf("%s %q is not an absolute path: a relative module would be loaded from the current directory", from, m)
	}
	return m, nil
}

// pin returns the user PIN: pin-value, else the file pin-source names
// (file: URI or path; one trailing newline removed), else
// NOTARIZE_PKCS11_PIN.
func (u *pkcs11URI) pin(lookupEnv func(string) (string, bool)) (string, error) {
	if u.pinValue != "" {
		return u.pinValue, nil
	}
	if u.pinSource != "" {
		path := strings.TrimPrefix(u.pinSource, "file:")
		if p, err := url.Parse(u.pinSource); err == nil && p.Scheme == "file" {
			path = p.Path
		}
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("pin-source: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
		if err != nil {
			return "", fmt.Errorf("pin-source %s: %w", path, err)
		}
		if len(b) > maxPINFile {
			return "", fmt.Errorf("pin-source %s: larger than %d bytes", path, maxPINFile)
		}
		pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pin == "" {
			return "", fmt.Errorf("pin-source %s is empty", path)
		}
		return pin, nil
	}
	if pin, ok := lookupEnv(EnvPKCS11PIN); ok && pin != "" {
		return pin, nil
	}
	return "", fmt.Errorf("no PIN: set %s, or give pin-source=FILE in the key's URI", EnvPKCS11PIN)
}
