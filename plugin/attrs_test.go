package plugin

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParseAttrs(t *testing.T) {
	many := make([]string, 65)
	for i := range many {
		many[i] = "k" + strings.Repeat("x", i) + "=v"
	}
	for _, tc := range []struct {
		name string
		in   []string
		want map[string]string
		bad  bool
	}{
		{name: "none", in: nil, want: nil},
		{name: "simple", in: []string{"team=payments", "ci.run/id=42"}, want: map[string]string{"team": "payments", "ci.run/id": "42"}},
		{name: "empty value", in: []string{"reviewed="}, want: map[string]string{"reviewed": ""}},
		{name: "value with equals", in: []string{"expr=a=b"}, want: map[string]string{"expr": "a=b"}},
		{name: "unicode value", in: []string{"owner=Zoë"}, want: map[string]string{"owner": "Zoë"}},
		{name: "no equals", in: []string{"team"}, bad: true},
		{name: "empty key", in: []string{"=v"}, bad: true},
		{name: "key with space", in: []string{"a b=v"}, bad: true},
		{name: "key starts with dot", in: []string{".a=v"}, bad: true},
		{name: "key too long", in: []string{strings.Repeat("k", 129) + "=v"}, bad: true},
		{name: "value too long", in: []string{"k=" + strings.Repeat("v", 1025)}, bad: true},
		{name: "control character", in: []string{"k=\x1b[31mred"}, bad: true},
		{name: "newline", in: []string{"k=a\nb"}, bad: true},
		{name: "invalid utf8", in: []string{"k=\xff"}, bad: true},
		{name: "duplicate", in: []string{"k=1", "k=2"}, bad: true},
		{name: "too many", in: many, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAttrs(tc.in)
			if tc.bad {
				if !errors.Is(err, ErrBadAttribute) {
					t.Fatalf("parseAttrs = %v, %v; want ErrBadAttribute", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("parseAttrs = %v, want %v", got, tc.want)
			}
		})
	}
}
