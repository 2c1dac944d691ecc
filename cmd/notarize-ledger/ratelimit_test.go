package main

import (
	"io"
	"net/netip"
	"slices"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
)

func TestRateLimitFlags(t *testing.T) {
	o, err := parseFlags([]string{"--rate-key", "0", "--rate-client", "7.5", "--rate-client-burst", "9",
		"--trusted-proxy", "10.1.2.3/8,fd00::/8", "--trusted-proxy", "192.0.2.1/32"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config(o, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.RateLimits{KeyPerSecond: -1, KeyBurst: ledger.DefaultKeyBurst, ClientPerSecond: 7.5, ClientBurst: 9,
		KeyDigestPerMinute: ledger.DefaultKeyDigestPerMinute}
	if cfg.RateLimits != want {
		t.Fatalf("rate limits %+v, want %+v", cfg.RateLimits, want)
	}
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.0.2.1/32")}
	if !slices.Equal(cfg.TrustedProxies, proxies) {
		t.Fatalf("trusted proxies %v, want %v", cfg.TrustedProxies, proxies)
	}
	// The defaults are the ledger's.
	o, _ = parseFlags(nil, io.Discard)
	if cfg, err = config(o, noEnv, nil); err != nil {
		t.Fatal(err)
	}
	if d := (ledger.RateLimits{}); cfg.RateLimits.KeyPerSecond != ledger.DefaultKeyPerSecond || cfg.RateLimits == d {
		t.Fatalf("default flags give %+v", cfg.RateLimits)
	}
}
