package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// logLines decodes the JSON lines of buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

// TestRefusalLogPacing: a refused pull retried in a loop makes one line at
// once, then one line per interval with the count of the refusals not
// logged (also when it stops: the summary), not a line per request; another
// kind of refusal is logged at once; past the bound, new kinds share one
// line per interval instead of growing the map.
func TestRefusalLogPacing(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRefusalLog(slog.New(slog.NewJSONHandler(&buf, nil)), func() time.Time { return now })
	l.max = 3
	refuse := func(key string, i int) {
		l.note(ctx, key, "decision", slog.String("target", key), slog.Int("attempt", i))
	}

	for i := range 100 {
		refuse("local/app@sha256:aa UNKNOWN", i)
	}
	lines := logLines(t, &buf)
	if len(lines) != 1 || lines[0]["attempt"] != 0.0 || lines[0]["more_requests"] != 0.0 {
		t.Fatalf("100 identical refusals in an interval: %d lines %v, want the first one", len(lines), lines)
	}
	refuse("local/other@sha256:bb UNTRUSTED", 0)
	if lines := logLines(t, &buf); len(lines) != 1 || lines[0]["target"] != "local/other@sha256:bb UNTRUSTED" {
		t.Fatalf("another kind of refusal: %v", lines)
	}

	// Within the interval the summary has nothing due.
	l.flush(ctx, false)
	if lines := logLines(t, &buf); len(lines) != 0 {
		t.Fatalf("summary before the interval: %v", lines)
	}
	// After it, the 99 repeats are summed up with the last one's fields.
	now = now.Add(refusalLogEvery)
	l.flush(ctx, false)
	lines = logLines(t, &buf)
	if len(lines) != 1 || lines[0]["more_requests"] != 99.0 || lines[0]["attempt"] != 99.0 || lines[0]["interval"] == nil {
		t.Fatalf("summary after the interval: %v", lines)
	}
	// The next retry, within the new interval, is counted; the one after
	// the interval is logged with that count.
	refuse("local/app@sha256:aa UNKNOWN", 100)
	now = now.Add(refusalLogEvery)
	refuse("local/app@sha256:aa UNKNOWN", 101)
	if lines := logLines(t, &buf); len(lines) != 1 || lines[0]["more_requests"] != 1.0 || lines[0]["attempt"] != 101.0 {
		t.Fatalf("a retry after the interval: %v", lines)
	}

	// Past the bound, made-up kinds share one line per interval; a kind
	// not logged for an interval and with nothing counted makes room.
	refuse("c", 0)
	for i := range 100 {
		refuse(fmt.Sprintf("made-up-%d", i), i)
	}
	lines = logLines(t, &buf)
	if len(lines) != 3 || lines[1]["target"] != "made-up-0" || lines[2]["other_kinds"] != true || len(l.keys) != 3 {
		t.Fatalf("100 kinds past the bound: %d lines %v, %d kinds kept; want c, made-up-0 (in the room of an expired kind), one shared line; 3 kinds", len(lines), lines, len(l.keys))
	}
	// close logs what is still counted, whatever the time.
	go l.run()
	l.close()
	lines = logLines(t, &buf)
	if len(lines) != 1 || lines[0]["other_kinds"] != true || lines[0]["more_requests"] != 98.0 {
		t.Fatalf("close: %v", lines)
	}
}
