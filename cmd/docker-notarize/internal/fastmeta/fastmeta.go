// Package fastmeta answers the docker CLI's metadata query,
// `docker-notarize docker-cli-plugin-metadata`, from its package
// initialisation, before the packages the commands need are initialised.
//
// The docker CLI runs a plugin twice for every command: once for this
// metadata, then for the command. A Go program initialises every package
// it links before main runs: for the plugin that is about 350 packages (the
// docker CLI's, sigstore's, the KMS providers' SDKs), most of the cost of a
// run that only prints five fields. Go initialises packages in the order of
// their import paths, each once the packages it imports are done (the
// language specification, "Package initialization"); this package imports
// only os and unicode/utf8, so it runs after os and a few packages like it,
// before regexp, reflect, the protobuf registries or any SDK, and exits.
//
// The fields are plugin.Metadata's; a test of the command holds them equal,
// byte for byte with the docker CLI's own encoding.
package fastmeta

import (
	"os"
	"unicode/utf8"
	_ "unsafe" // go:linkname: the version the linker sets in package main
)

// Arg is the argument the docker CLI passes to ask a plugin for its
// metadata (metadata.MetadataSubcommandName in docker/cli).
const Arg = "docker-cli-plugin-metadata"

// The metadata fields, as plugin.Metadata sets them.
const (
	SchemaVersion    = "0.1.0"
	Vendor           = "docker notarize"
	ShortDescription = "Sign and verify image digests against a tamper-evident ledger"
	URL              = "https://github.com/notarize/docker-notarize"
)

// version is main.version, which the build sets with
// -ldflags "-X main.version=...": a string variable with a constant value
// is laid out by the linker, so it holds its value before any package is
// initialised.
//
//go:linkname version main.version
var version string

func init() {
	if len(os.Args) == 2 && os.Args[1] == Arg {
		_, err := os.Stdout.WriteString(JSON(version))
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// JSON is the metadata document for version exactly as the docker CLI's
// plugin library writes it (encoding/json, no HTML escaping, indented by
// five spaces, a final newline; Version left out when empty).
func JSON(version string) string {
	b := make([]byte, 0, 256)
	b = append(b, "{\n"...)
	field := func(name, value string, last bool) {
		b = append(b, `     "`...)
		b = append(b, name...)
		b = append(b, `": `...)
		b = appendString(b, value)
		if !last {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	field("SchemaVersion", SchemaVersion, false)
	field("Vendor", Vendor, false)
	if version != "" {
		field("Version", version, false)
	}
	field("ShortDescription", ShortDescription, false)
	field("URL", URL, true)
	b = append(b, "}\n"...)
	return string(b)
}

// appendString appends s as encoding/json does with HTML escaping off:
// quotes, backslashes and control characters escaped, U+2028 and U+2029
// escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
