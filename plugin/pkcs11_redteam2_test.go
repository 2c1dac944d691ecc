package plugin

import (
	"strings"
	"testing"
)

// TestRedteam2PINNeverPrinted: key generate --pkcs11 with a URI that carries
// a pin-value and is wrong in some other way (a typo in the scheme, a bad
// attribute, a relative module, both pin attributes, no object, a missing
// module) fails without printing the PIN on stdout or stderr: a CI log keeps both.
func TestRedteam2PINNeverPrinted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const pin = "S3cretPIN4711"
	for _, uri := range []string{
		"pkcs11:token=t;object=k?pin-value=" + pin + "&module-path=relative.so",
		"pkcs11:token=t;object=k?pin-value=" + pin + "&pin-source=/etc/pin",
		"pkcs11:token=t?pin-value=" + pin + "&module-path=/nonexistent/module.so",
		"pkcs11:token=t;object=k?pin-value=" + pin + "&module-path=/nonexistent/module.so",
		"pkcs11:token=t;object=k?pin-value=" + pin + "%zz&module-path=/nonexistent/module.so",
		"pkcs11:token=t;object=k?pin-value" + pin + "&module-path=/nonexistent/module.so",
		"pkcs11:token=t;object=k;pin-value=" + pin + "?module-path=/nonexistent/module.so",
		"pkcs11;token=t;object=k?pin-value=" + pin,
		"PKCS11:token=t;object=k?PIN-VALUE=" + pin + "&module-path=/nonexistent/module.so",
		"pkcs11:token=t;object=k?pin%2Dvalue=" + pin + "&module-path=/nonexistent/module.so",
	} {
		out, errOut, code := h.run("key", "generate", "--name", "hsm", "--pkcs11", uri)
		if code == 0 || strings.Contains(errOut, "unknown flag") || strings.Contains(errOut, "unknown shorthand") {
			t.Errorf("%s: exit %d: the URI was not looked at\n%s", uri, code, errOut)
		}
		if strings.Contains(out+errOut, pin) {
			t.Errorf("BYPASS: the PIN of %s was printed (exit %d):\nstdout:\n%s\nstderr:\n%s", uri, code, out, errOut)
		}
	}
}
