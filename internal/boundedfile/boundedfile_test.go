package boundedfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, n), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		path    string
		limit   int64
		wantLen int
		wantErr string
		wantIs  error
	}{
		{"empty", write("empty", 0), 4, 0, "", nil},
		{"under the limit", write("under", 3), 4, 3, "", nil},
		{"at the limit", write("at", 4), 4, 4, "", nil},
		{"over the limit", write("over", 5), 4, 0, "over: larger than 4 bytes", nil},
		{"missing", filepath.Join(dir, "missing"), 4, 0, "no such file", fs.ErrNotExist},
		{"directory", dir, 4, 0, "is a directory", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Read(tc.path, tc.limit)
			if tc.wantErr == "" {
				if err != nil || len(b) != tc.wantLen {
					t.Fatalf("Read = %d bytes, %v; want %d bytes", len(b), err, tc.wantLen)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || b != nil {
				t.Fatalf("Read = %q, %v; want error containing %q", b, err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %v is not %v", err, tc.wantIs)
			}
		})
	}
}
