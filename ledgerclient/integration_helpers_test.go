package ledgerclient_test

import (
	"encoding/base64"
	"testing"
)

func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
