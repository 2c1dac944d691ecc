// Package blobcache is the proxy's content-addressed blob store: a blob is
// written to a temporary file while it streams in, its SHA-256 and size are
// checked, and only then is it renamed into place. Parallel requests for a
// blob share one download (a Fill) and can all stream from it as it grows;
// no reader ever receives the last byte of a blob before the whole blob has
// been verified, so a complete answer is always verified content and a
// failed download ends every reader's stream short.
//
// # Cold fills
//
// A fill runs in three overlapped stages (pipeline.go): one goroutine reads
// the upstream into 1 MiB memory chunks, which readers stream from at once;
// a writer fills the temporary file and a hasher hashes, each free to run on
// its own core. Chunks stay in memory until both have them and a window of
// 4 MiB is full; a reader further behind reads the file; the upstream is
// read at most 8 spans ahead of the slower stage, so a fill holds about
// 15 MiB at most (TestFillMemoryBounded). Chunk buffers are recycled
// through a pool, not left to the garbage collector; a chunk a reader is
// still writing from is pinned until it is done. Readers write to the
// client straight from the chunks (WriteTo, which io.Copy uses). The last
// byte is held back until the hasher has checked every byte. A reader reads
// the file only up to what the writer has put there, never on into bytes
// still only in memory, and a file that holds more than the bytes verified
// is not cached (TestFillReadersStress).
//
// What all fills hold at once is bounded too (red team 6, F6: 64 slow
// fills held 347 MiB, and a manifest may list 4,096 layers): every 1 MiB
// chunk, and a reader's 1 MiB buffer for the file, is charged to the
// cache's fill memory budget (Config.FillMemoryBytes, default 64 MiB).
// Past it a fill takes 32 KiB buffers, keeps no window and waits for the
// file and the hash before each new one (two small chunks at most), and a
// reader reads the file 32 KiB at a time: no fill waits for room or is
// refused, so slow fills cannot take memory from the others, and the
// digest check and the held-back last byte are the same either way
// (TestFillMemoryBudgetShared).
//
// # Bound
//
// The cache can be bounded (Config.MaxBytes): when committing a blob would
// exceed the bound, the least recently used blobs that nobody is reading are
// evicted down to a low-water mark. A blob that cannot fit (larger than the
// bound, or the rest of the cache is in use) is served to its readers and
// not cached. Last use is tracked in memory and in the files' mtimes, which
// seed the order when the cache is reopened.
//
// # Fleets: a shared store (issue 15)
//
// Several proxies behind a load balancer can share their blobs through one
// store on a distribution/v3 storage driver (Shared; configured by the
// proxy's storage: section, ParseStorage, in distribution's shape): s3 (AWS
// and S3-compatible stores), gcs or azure. Each instance keeps its own
// ledger replica, its own decisions and its own local cache (this package's
// Cache, bounded by MaxBytes), which is both its hot tier and the staging
// area of its fills. Layout in the driver's namespace:
//
//	/notarize/v1/blobs/sha256/XX/HEX        committed, verified blobs
//	/notarize/v1/uploads/INSTANCE/HEX-RAND  temporary uploads of one instance
//
// A blob missing locally is read from the shared store when it is there,
// and hashed like any download: a copy that does not hash to its digest
// aborts the client's stream (ErrDigestMismatch), is not cached, and is
// removed from the store so that the next pull goes to the upstream. A blob
// fetched from the upstream is put into the store after the fill verified
// it: written to a temporary path of this instance, hashed again as it is
// written, committed, and only then moved (the driver's Move) under its
// digest; bytes that do not hash to the digest never reach that path.
// Two instances filling one blob at once both serve their clients; the one
// whose upload ends second finds the blob in place and removes its upload
// instead of moving it (were both to move, identical bytes: one copy, whole
// either way). No temporary upload outlives its put: whether it was moved,
// failed, lost to another instance, or was cut short by the fill's timeout
// or by Close at shutdown (which cancels the puts still running once its
// context ends, and waits for them to clean up), it is removed under a
// context detached from the put's, bounded by SharedConfig.CleanupTimeout.
// The puts run after the fills, detached from the clients: a client that
// disconnects does not stop them, and a client's pull can end before the
// put of its blobs has. At most four puts run at once, 64 more wait their
// turn, and a put beyond those is skipped (Stats.SharedSkipped; the blob
// stays local, the next instance needing it fetches and puts it): a put may
// hold its driver's part buffer (10 MiB with s3) for as long as a slow
// store takes (TestSharedPutsBounded). Only a process killed outright leaves an upload
// behind: at start an instance removes its own temporary uploads and other
// instances' older than SharedConfig.StaleUploadAge; incomplete multipart
// uploads of a killed instance need the bucket rule below.
//
// Nothing trust-related is read from the store: the manifests, the
// decisions and the gate (which blobs a repository may have, and the
// confirmation that its own upstream has them) stay per instance. Only blob
// bytes come from the store, and they are re-hashed, or, with redirects,
// checked by the client against the digest it asked for.
//
// # Streaming or redirecting
//
// By default blobs are streamed through the proxy (unlike distribution,
// which redirects by default): clients need no route to the bucket, and a
// blob is cached on the instance's local disk after its first pull there.
// With redirect: {disable: false} an instance answers a blob it does not
// have locally but the store has with a 307 to a presigned URL (20 minutes,
// the driver's): the bytes then flow from the bucket to the client (ranges
// work, the store serves them), the proxy's CPU and bandwidth are spared,
// and the client checks the digest, as docker, containerd and crane do.
// The gate still decides before the redirect. The proxy does not read the
// copy before redirecting (that would cost the transfer the redirect
// spares): a copy corrupted in the bucket is refused by those clients, never
// taken for the blob, but their pulls fail until an instance that streams
// the blob (hashing it) removes the copy and puts a good one back, or the
// operator deletes the object. A HEAD for a blob missing locally is
// answered from the store's object size when the repository's upstream has
// already answered for the blob (as a local hit is); the first HEAD there
// asks that upstream, the gate's confirmation.
//
// # Bounding the shared store, and eviction under a reader
//
// The shared store is not bounded by the proxy: bound it with a bucket
// lifecycle rule on the prefix notarize/v1/, e.g. expire objects 30 days
// after creation and abort incomplete multipart uploads after 1 day (S3
// lifecycle Expiration and AbortIncompleteMultipartUpload; GCS and Azure
// have equivalents). An expired blob is fetched from the upstream again at
// its next pull and put back. When a blob is deleted while an instance is
// reading it, the read may still complete (S3 finishes a GET in progress);
// if it fails, the fill fails: that client's stream is aborted short (never
// a truncated blob taken for whole), nothing is cached, and the client's
// retry is fetched from the upstream. A client following a redirect to a
// deleted blob gets 404 from the store; its retry finds the blob missing
// there and is streamed from the upstream.
package blobcache
