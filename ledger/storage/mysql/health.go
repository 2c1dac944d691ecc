package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/transparency-dev/tessera"
)

// dbHealth tells a database outage (storage.ErrUnavailable: retry later) from
// other errors. Tessera's MySQL driver formats most errors with %v, so the
// driver's error types do not always survive: the message is checked too,
// and as a last resort the database is pinged.
type dbHealth struct {
	db        *sql.DB
	downUntil atomic.Int64 // unix nanoseconds; a failed ping speaks for the database until then
}

// check returns err, wrapped in storage.ErrUnavailable if it comes from a database
// that cannot be reached, is restarting or is failing over.
func (h *dbHealth) check(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, storage.ErrUnavailable) ||
		errors.Is(err, tessera.ErrPushback) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if transientDBError(err) || !h.reachable(ctx) {
		return fmt.Errorf("%w: database: %w", storage.ErrUnavailable, err)
	}
	return err
}

// reachable pings the database, remembering a failure for downMemo.
func (h *dbHealth) reachable(ctx context.Context) bool {
	if time.Now().UnixNano() < h.downUntil.Load() {
		return false
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	if err := h.db.PingContext(pctx); err != nil {
		h.downUntil.Store(time.Now().Add(downMemo).UnixNano())
		return false
	}
	return true
}

// transientDBError reports whether err is a connection failure or a
// MySQL error that means "try again": too many connections, shutdown in
// progress, lock wait timeout, deadlock, read-only (failover), connection
// killed (MariaDB), client disconnected (MySQL 8). Error texts are checked
// for errors whose type Tessera's %v formatting dropped.
func transientDBError(err error) bool {
	if me, ok := errors.AsType[*gomysql.MySQLError](err); ok {
		switch me.Number {
		case 1040, 1053, 1205, 1213, 1290, 1792, 1836, 1927, 4031:
			return true
		}
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, gomysql.ErrInvalidConn) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, m := range []string{
		"invalid connection", "bad connection", "connection refused", "connection reset", "broken pipe",
		"i/o timeout", "unexpected eof", "server shutdown", "busy buffer", "error 1053", "error 1927", "error 2013",
	} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// add decorates Tessera's add function with check.
func (h *dbHealth) add(next tessera.AddFn) tessera.AddFn {
	return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
		f := next(ctx, e)
		return func() (tessera.Index, error) {
			idx, err := f()
			return idx, h.check(ctx, err)
		}
	}
}

// reader decorates Tessera's MySQL log reader with check, and trims a
// partial tile or bundle to the size asked for (the driver returns the
// largest it has), so that the reader answers exactly as the POSIX one.
func (h *dbHealth) reader(r tessera.LogReader) tessera.LogReader {
	return &checkedReader{r: r, h: h}
}

type checkedReader struct {
	r tessera.LogReader
	h *dbHealth
}

var _ tessera.LogReader = (*checkedReader)(nil)

func (c *checkedReader) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	b, err := c.r.ReadCheckpoint(ctx)
	return b, c.h.check(ctx, err)
}

func (c *checkedReader) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := c.r.ReadTile(ctx, level, index, p)
	if err != nil {
		return nil, c.h.check(ctx, err)
	}
	if want := int(p) * 32; p > 0 && len(b) > want {
		b = b[:want]
	}
	return b, nil
}

func (c *checkedReader) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := c.r.ReadEntryBundle(ctx, index, p)
	if err != nil {
		return nil, c.h.check(ctx, err)
	}
	if p > 0 {
		prefix, ok := storage.FirstEntries(b, int(p))
		if !ok {
			return nil, fmt.Errorf("entry bundle %d: shorter than %d entries", index, p)
		}
		b = prefix
	}
	return b, nil
}

func (c *checkedReader) IntegratedSize(ctx context.Context) (uint64, error) {
	n, err := c.r.IntegratedSize(ctx)
	return n, c.h.check(ctx, err)
}

func (c *checkedReader) NextIndex(ctx context.Context) (uint64, error) {
	n, err := c.r.NextIndex(ctx)
	return n, c.h.check(ctx, err)
}
