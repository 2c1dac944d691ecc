// Package archtest holds the test that keeps the dependency direction of
// DESIGN.md: cmd → plugin|proxy|ledger → ledgerclient → ledger/api → notarize,
// where ledger (the server) and ledgerclient share only the wire contract
// ledger/api, with a pure core that does no network I/O and never logs.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/notarize/docker-notarize"

// allowed lists, per package, the packages of this module it may import
// (non-test code). Sub-packages inherit the row of their nearest listed
// ancestor; a listed package also stands for its sub-packages.
var allowed = map[string][]string{
	"notarize":               {},
	"ledger/api":             {"notarize"}, // the wire contract: a leaf both sides import
	"vindex":                 {"notarize"}, // the verifiable index's tree (pure, like the core)
	"ledgerclient":           {"notarize", "ledger/api", "vindex", "internal/boundedfile", "internal/atomicfile", "internal/witnesspolicy"},
	"ledger":                 {"notarize", "vindex", "internal/atomicfile", "internal/boundedfile", "internal/ratelimit", "internal/pebblestore", "internal/witnesspolicy"},
	"ledger/storage":         {"notarize", "internal/atomicfile", "internal/pebblestore"}, // drivers and their contract: below package ledger, never importing it
	"proxy":                  {"notarize", "ledgerclient", "ledger/api", "vindex", "internal/boundedfile", "internal/ratelimit"},
	"plugin":                 {"notarize", "ledgerclient", "ledger/api", "internal/atomicfile", "internal/boundedfile"},
	"internal":               {"notarize", "ledgerclient"},
	"internal/boundedfile":   {}, // leaves, so that every package may use them
	"internal/atomicfile":    {},
	"internal/ratelimit":     {},
	"internal/pebblestore":   {}, // the pebble stores' guards, shared by the POSIX index and the map
	"internal/witnesspolicy": {}, // a witness policy's keys, read alike by the ledger and its clients
	"internal/testutil":      {}, // imported from tests and the test-support packages below only
	// Test support: start what tests need through the project's scripts.
	"ledger/witnesstest":          {"internal/testutil"},
	"ledger/internal/mariadbtest": {"internal/testutil"},
	"proxy/blobcache/s3test":      {"internal/testutil"},
	"internal/browsertest":        {"internal/testutil"}, // imported from tests only
	"cmd":                         {"notarize", "ledgerclient", "ledger", "proxy", "plugin", "internal"},
	"e2e":                         {"notarize", "ledgerclient", "ledger", "proxy", "plugin", "internal"},
	"bench":                       {"notarize", "ledgerclient", "ledger"}, // bench/fill1m, bench/currentprof: bench/verify-1m.sh's programs
}

// within reports whether pkg is p or one of its sub-packages.
func within(pkg, p string) bool {
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

// rowOf returns the allowed row that governs pkg: its nearest listed
// ancestor (or itself).
func rowOf(pkg string) (string, bool) {
	best := ""
	for p := range allowed {
		if within(pkg, p) && len(p) > len(best) {
			best = p
		}
	}
	return best, best != ""
}

// forbiddenInCore are standard or third-party packages the core must not import.
var forbiddenInCore = []string{"net/http", "net", "os/exec", "log", "log/slog", "github.com/docker/", "github.com/google/go-containerregistry"}

func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := strings.TrimPrefix(fields[0], module+"/"), fields[1:]
		row, ok := rowOf(pkg)
		if !ok {
			t.Errorf("package %s is not in the layout of DESIGN.md; add it to archtest", pkg)
			continue
		}
		rules := allowed[row]
		for _, imp := range imports {
			if row == "notarize" {
				for _, f := range forbiddenInCore {
					if imp == f || strings.HasSuffix(f, "/") && strings.HasPrefix(imp, f) {
						t.Errorf("core package %s imports %s: the core does no I/O and never logs", pkg, imp)
					}
				}
			}
			rel, ours := strings.CutPrefix(imp, module+"/")
			if !ours {
				continue
			}
			if within(rel, row) {
				continue
			}
			ok := false
			for _, a := range rules {
				ok = ok || within(rel, a)
			}
			if !ok {
				t.Errorf("%s imports %s: against the dependency direction (allowed: %v)", pkg, rel, rules)
			}
		}
	}
}
