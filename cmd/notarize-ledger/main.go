// Command notarize-ledger runs a docker notarize ledger: a transparency log
// of signed trust statements served over HTTP (see package ledger).
//
//	notarize-ledger --addr 127.0.0.1:7070 --data ./.notarize/ledger
//
// On first start it generates the checkpoint signing key in the data
// directory and writes the verifier key to DATA/ledger.pub; clients pin it.
//
// Several instances can share one MySQL/MariaDB database behind a load
// balancer. They sign with one key, made once:
//
//	notarize-ledger keygen --origin ledger.example.com/notarize --out ledger.key
//	notarize-ledger --storage mysql --mysql-dsn 'user:pass@tcp(db:3306)/notarize' --key-file ledger.key
//
// With --witness-policy FILE every checkpoint is cosigned by a quorum of
// witnesses (C2SP tlog-witness) before it is published; with --tls-cert
// and --tls-key the ledger serves HTTPS (see docs/DEPLOYMENT.md).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
	"k8s.io/klog/v2"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// envSignerKey holds the note signer key itself, as an alternative to --key-file.
const envSignerKey = "NOTARIZE_LEDGER_SIGNER_KEY"

// envMySQLDSN holds the MySQL DSN, as an alternative to --mysql-dsn (it
// keeps the password out of the process list).
const envMySQLDSN = "NOTARIZE_LEDGER_MYSQL_DSN"

const shutdownTimeout = 30 * time.Second

func main() {
	applyGCDefault(os.Getenv, debug.SetGCPercent) // only the process's main: tests run ledgers in-process
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, klog.SetSlogLogger)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "notarize-ledger:", err)
		os.Exit(1)
	}
}

// errUsage marks a command-line error; the flag package has printed why.
var errUsage = errors.New("usage")

// options are the command-line flags.
type options struct {
	addr, data, origin     string
	storage, mysqlDSN      string
	signersFile, keyFile   string
	maxFutureSkew          time.Duration
	logFormat, logLevel    string
	showVersion            bool
	batchAge, checkpointIv time.Duration
	mapDir                 string // --map-dir: the verifiable index's directory (posix; ignored with mysql)
	indexEngine            string // --index-engine: bbolt or pebble (posix; storage.go)

	rateKey, rateClient, rateKeyDigest float64
	rateKeyBurst, rateClientBurst      int
	trustedProxies                     []netip.Prefix

	witnessPolicy               string
	witnessTimeout, republishIv time.Duration
	receiptTimeout              time.Duration
	keyTables                   int
	tlsCert, tlsKey             string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("notarize-ledger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:7070", "listen `address`")
	fs.StringVar(&o.data, "data", filepath.Join(".notarize", "ledger"), "data `directory`: log, index, keys (posix storage)")
	fs.StringVar(&o.mapDir, "map-dir", "", "`directory` for the verifiable index (vindex.pebble or vindex.db) instead of --data (posix); deprecated and ignored with --storage mysql, which keeps one map in the database for every instance")
	fs.StringVar(&o.indexEngine, "index-engine", "", indexEngineHelp)
	fs.StringVar(&o.storage, "storage", storagePOSIX, "where the log lives: posix (--data) or mysql (--mysql-dsn, shared by several instances)")
	fs.StringVar(&o.mysqlDSN, "mysql-dsn", "", "MySQL/MariaDB `DSN` user:pass@tcp(host:3306)/dbname for --storage mysql; also $"+envMySQLDSN)
	fs.StringVar(&o.origin, "origin", "", "checkpoint origin (log name); default: the persisted one, or <hostname>/notarize-ledger")
	fs.StringVar(&o.signersFile, "signers", "", "`file` of the signers allowed to write: PEM public keys, or YAML identities (signers: {NAME: {email: …, keys: [PEM file or inline]}}), whose statements must then claim their own name and email or none; default: open to any valid signature")
	fs.StringVar(&o.keyFile, "key-file", "", "`file` holding the note signer key (PRIVATE+KEY+…); also $"+envSignerKey+"; default: DATA/"+posix.KeyFile)
	fs.DurationVar(&o.maxFutureSkew, "max-future-skew", ledger.DefaultMaxFutureSkew, "refuse statements dated further than this in the future")
	fs.DurationVar(&o.batchAge, "batch-max-age", ledger.DefaultBatchMaxAge, "longest an entry waits for a batch (longer: less CPU per statement under load, a lone submission waits longer)")
	fs.DurationVar(&o.checkpointIv, "checkpoint-interval", ledger.DefaultCheckpointInterval, "how often a checkpoint may be published (at least 100ms; with mysql, across all instances)")
	fs.Float64Var(&o.rateKey, "rate-key", ledger.DefaultKeyPerSecond, "new statements one signer key may append per second, sustained; 0 disables")
	fs.IntVar(&o.rateKeyBurst, "rate-key-burst", ledger.DefaultKeyBurst, "… and at once")
	fs.Float64Var(&o.rateClient, "rate-client", ledger.DefaultClientPerSecond, fmt.Sprintf("submissions one client (IPv4 address or IPv6 /64) may make per second, sustained; an IPv6 /56 may make %d times as many, a /48 %d times; 0 disables", ledger.Client56Scale, ledger.Client48Scale))
	fs.IntVar(&o.rateClientBurst, "rate-client-burst", ledger.DefaultClientBurst, fmt.Sprintf("… and at once (an IPv6 /56 %d times as many, a /48 %d times)", ledger.Client56Scale, ledger.Client48Scale))
	fs.Float64Var(&o.rateKeyDigest, "rate-key-digest", ledger.DefaultKeyDigestPerMinute, "new statements one key may append about one digest per minute; 0 disables")
	fs.Func("trusted-proxy", "`CIDR` of a reverse proxy whose X-Forwarded-For names the client for --rate-client (repeatable or comma-separated; default: X-Forwarded-For is ignored)", func(v string) error {
		for _, c := range strings.Split(v, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				return err
			}
			o.trustedProxies = append(o.trustedProxies, p.Masked())
		}
		return nil
	})
	fs.StringVar(&o.witnessPolicy, "witness-policy", "", "witness policy `file` (log/witness NAME VKEY URL/group/quorum lines, as Tessera reads it): every checkpoint is published only once the quorum cosigned it")
	fs.DurationVar(&o.witnessTimeout, "witness-timeout", ledger.DefaultWitnessTimeout, "longest one attempt to gather the witness quorum's cosignatures may take")
	fs.DurationVar(&o.republishIv, "checkpoint-republish-interval", ledger.DefaultCheckpointRepublishInterval, "publish (and witness) the checkpoint again after this long without new entries, so its cosignatures show it is fresh")
	fs.DurationVar(&o.receiptTimeout, "receipt-timeout", ledger.DefaultReceiptTimeout, "longest a submission waits for a published checkpoint (then 503; the entry is published later)")
	fs.IntVar(&o.keyTables, "key-tables", ledger.DefaultKeyTables, fmt.Sprintf("signer keys that may hold a table of their multiples (%d KiB each; a key gets one after 16 statements, and each of its signature checks then costs about 0.6×); 1 to %d (%d MiB), 0 for the default", notarize.KeyTableBytes>>10, notarize.DefaultKeyCacheSize, notarize.DefaultKeyCacheSize*notarize.KeyTableBytes>>20))
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate chain `file`: serve HTTPS (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: notarize-ledger [flags]\n       notarize-ledger keygen --origin NAME --out FILE\n       notarize-ledger migrate-index --data DIR --to pebble\n\nRuns a docker notarize ledger.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), gcHelp)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "notarize-ledger: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return nil, errUsage
	}
	return o, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// config turns the flags and environment into a ledger.Config.
func config(o *options, getenv func(string) string, logger *slog.Logger) (ledger.Config, error) {
	cfg := ledger.Config{
		Origin:             o.origin,
		MaxFutureSkew:      o.maxFutureSkew,
		BatchMaxAge:        o.batchAge,
		CheckpointInterval: o.checkpointIv,
		TrustedProxies:     o.trustedProxies,
		Logger:             logger,

		WitnessTimeout:              o.witnessTimeout,
		CheckpointRepublishInterval: o.republishIv,
		ReceiptTimeout:              o.receiptTimeout,
		KeyTables:                   o.keyTables,
		MapDir:                      o.mapDir,
	}
	var err error
	if o.witnessPolicy != "" {
		if cfg.WitnessPolicy, err = readBounded(o.witnessPolicy, ledger.MaxWitnessPolicySize); err != nil {
			return cfg, fmt.Errorf("--witness-policy: %w", err)
		}
	}
	if cfg.RateLimits, err = rateLimits(o); err != nil {
		return cfg, err
	}
	switch {
	case o.keyFile != "":
		b, err := os.ReadFile(o.keyFile)
		if err != nil {
			return cfg, fmt.Errorf("--key-file: %w", err)
		}
		cfg.NoteSignerKey = strings.TrimSpace(string(b))
	case getenv(envSignerKey) != "":
		cfg.NoteSignerKey = strings.TrimSpace(getenv(envSignerKey))
	}
	if o.signersFile != "" {
		b, err := readBounded(o.signersFile, ledger.MaxSignersFileSize)
		if err != nil {
			return cfg, fmt.Errorf("--signers: %w", err)
		}
		signers, err := ledger.LoadSigners(b, filepath.Dir(o.signersFile))
		if err != nil {
			return cfg, fmt.Errorf("--signers %s: %w", o.signersFile, err)
		}
		cfg.Signers, cfg.Identities = signers.Keys, signers.Identities
	}
	return cfg, cfg.Validate()
}

// run starts the ledger and serves it until ctx is done, then shuts down
// gracefully: in-flight requests finish and the log is flushed. routeLogs,
// when not nil, is handed the logger for process-wide logs (main sends
// Tessera's klog output there; tests, which run several ledgers in one
// process, leave the global alone).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, routeLogs func(*slog.Logger)) error {
	if len(args) > 0 && args[0] == "keygen" {
		return runKeygen(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "map-rebuild" {
		return runMapRebuild(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "migrate-index" {
		return runMigrateIndex(ctx, args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "notarize-ledger", versionString())
		return nil
	}
	logger, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if routeLogs != nil {
		routeLogs(logger) // Tessera logs through klog
	}
	cfg, err := config(o, getenv, logger)
	if err != nil {
		return err
	}
	sf, err := storageOf(o, getenv, cfg, logger)
	if err != nil {
		return err
	}
	tlsCfg, err := serverTLS(o.tlsCert, o.tlsKey)
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	l, err := ledger.New(ctx, st, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), closeLedger(l))
	}
	srv := &http.Server{
		Handler:           l.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig:         tlsCfg,
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	storage, pubNote := sf.describe(st)
	logger.InfoContext(ctx, "ledger started",
		slog.String("version", versionString()),
		slog.String("url", scheme+"://"+ln.Addr().String()),
		slog.Bool("witnessed", l.Witnessed()),
		slog.String("storage", storage),
		slog.String("origin", l.Origin()),
		slog.String("verifier_key", l.VerifierKey()),
		slog.Bool("open_writes", l.OpenWrites()))
	fmt.Fprintf(stdout, "notarize-ledger serving %s://%s\nstorage:      %s\norigin:       %s\nverifier key: %s\n              %s\n",
		scheme, ln.Addr(), storage, l.Origin(), l.VerifierKey(), pubNote)
	if l.Witnessed() {
		fmt.Fprintf(stdout, "witnessed:    checkpoints need the quorum of %s\n", o.witnessPolicy)
	}

	serveErr := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
			return
		}
		serveErr <- srv.Serve(ln)
	}()
	select {
	case <-ctx.Done():
		logger.InfoContext(ctx, "shutting down")
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", serr))
	}
	if cerr := l.Close(sctx); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err == nil {
		logger.InfoContext(ctx, "stopped")
	}
	return err
}

func closeLedger(l *ledger.Ledger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return l.Close(ctx)
}

func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// runKeygen makes the checkpoint signing key of a ledger whose instances
// share it (mysql storage): FILE (mode 0600) holds the signer key, FILE.pub
// the verifier key clients pin. It never overwrites a key.
func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notarize-ledger keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	origin := fs.String("origin", "", "the log's `name`, its checkpoint origin, e.g. ledger.example.com/notarize (required)")
	out := fs.String("out", "", "`file` to write the signer key to (mode 0600); the verifier key goes to FILE.pub (required)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: notarize-ledger keygen --origin NAME --out FILE\n\nMakes the checkpoint key shared by every instance of a ledger.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *origin == "" || *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "notarize-ledger keygen: --origin and --out are required, and nothing else")
		fs.Usage()
		return errUsage
	}
	skey, vkey, err := ledger.NewSignerKey(*origin)
	if err != nil {
		return err
	}
	if err := writeNew(*out, skey+"\n", 0o600); err != nil {
		return err
	}
	if err := writeNew(*out+".pub", vkey+"\n", 0o644); err != nil {
		return errors.Join(err, os.Remove(*out))
	}
	fmt.Fprintf(stdout, "signer key:   %s (keep it secret; give it to every instance with --key-file or $%s)\nverifier key: %s\n              (in %s.pub; clients pin it)\n",
		*out, envSignerKey, vkey, *out)
	return nil
}

// writeNew creates path with data, failing if it exists.
func writeNew(path, data string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("keygen: write %s: %w", path, err)
	}
	return nil
}

// rateLimits turns the --rate-* flags into ledger.RateLimits: a flag's 0
// disables its limit (a negative rate in the config).
func rateLimits(o *options) (ledger.RateLimits, error) {
	off := func(name string, v float64) (float64, error) {
		switch {
		case v < 0 || math.IsNaN(v) || math.IsInf(v, 0):
			return 0, fmt.Errorf("--%s %v: want a rate >= 0 (0 disables)", name, v)
		case v == 0:
			return -1, nil
		}
		return v, nil
	}
	var r ledger.RateLimits
	var err error
	if r.KeyPerSecond, err = off("rate-key", o.rateKey); err != nil {
		return r, err
	}
	if r.ClientPerSecond, err = off("rate-client", o.rateClient); err != nil {
		return r, err
	}
	if r.KeyDigestPerMinute, err = off("rate-key-digest", o.rateKeyDigest); err != nil {
		return r, err
	}
	if o.rateKeyBurst < 1 || o.rateClientBurst < 1 {
		return r, fmt.Errorf("--rate-key-burst %d, --rate-client-burst %d: want at least 1", o.rateKeyBurst, o.rateClientBurst)
	}
	r.KeyBurst, r.ClientBurst = o.rateKeyBurst, o.rateClientBurst
	return r, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// serverTLS loads --tls-cert and --tls-key: nil when neither is set.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: over %d bytes", path, limit)
	}
	return b, nil
}
