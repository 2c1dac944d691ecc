// Command tesserapeer is the peer of bench/ingest-bench.sh: a bare Tessera
// log on POSIX storage, Tessera's own conformance personality
// (tessera/cmd/conformance/posix) with the ledger's batching and
// checkpoint settings. POST /add appends the body as it is, with no
// parse, no signature check and no duplicate detection, and answers 201
// with the entry's index once a published checkpoint covers it (as the
// ledger's receipt does), so the difference between the two is what the
// ledger adds to Tessera.
//
//	tesserapeer -dir DIR -addr 127.0.0.1:PORT
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	dir := flag.String("dir", "", "directory of the log")
	addr := flag.String("addr", "127.0.0.1:7071", "listen address")
	batchAge := flag.Duration("batch-max-age", 50*time.Millisecond, "longest an entry waits for a batch (the ledger's default)")
	checkpoint := flag.Duration("checkpoint-interval", 100*time.Millisecond, "how often a checkpoint is published (the ledger's default)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("tesserapeer: -dir is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dir, *addr, *batchAge, *checkpoint); err != nil {
		log.Fatal("tesserapeer: ", err)
	}
}

func run(ctx context.Context, dir, addr string, batchAge, checkpoint time.Duration) error {
	skey, _, err := note.GenerateKey(rand.Reader, "bench.example/tesserapeer")
	if err != nil {
		return fmt.Errorf("note key: %w", err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return fmt.Errorf("note signer: %w", err)
	}
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return fmt.Errorf("posix storage: %w", err)
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(1024, batchAge).
		WithCheckpointInterval(checkpoint))
	if err != nil {
		return fmt.Errorf("tessera appender: %w", err)
	}
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		idx, _, err := awaiter.Await(r.Context(), appender.Add(r.Context(), tessera.NewEntry(b)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%d", idx.Index)
	})
	// As Tessera's conformance personality: the checkpoint from the files
	// (bench/ingest-bench.sh waits for it).
	mux.Handle("GET /checkpoint", http.FileServer(http.Dir(dir)))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return shutdown(context.Background())
}
