package notarize_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/notarize"
)

func noteKey(t *testing.T, origin string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// TestMapRoot: a map-root entry round-trips under the ledger's key, and is
// refused under another key, for another origin, in another spelling, or
// when it is a statement entry.
func TestMapRoot(t *testing.T) {
	s, v := noteKey(t, "ledger.test/log")
	other, otherV := noteKey(t, "ledger.test/log")
	mr := &notarize.MapRoot{Origin: "ledger.test/log", Size: 42, Root: [32]byte{1, 2, 3}}
	b, err := mr.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	if !notarize.IsMapRoot(b) {
		t.Fatal("not recognized")
	}
	got, err := notarize.ParseMapRoot(b, v)
	if err != nil || got.Origin != mr.Origin || got.Size != mr.Size || got.Root != mr.Root || !got.Time.IsZero() {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := notarize.ParseMapRoot(b, otherV); !errors.Is(err, notarize.ErrBadMapRoot) {
		t.Fatalf("under another key: %v", err)
	}
	forged, _ := mr.Sign(other)
	if _, err := notarize.ParseMapRoot(forged, v); !errors.Is(err, notarize.ErrBadMapRoot) {
		t.Fatalf("signed by another key: %v", err)
	}
	if _, err := (&notarize.MapRoot{Origin: "elsewhere"}).Sign(s); err == nil {
		t.Fatal("signed for another origin")
	}
	for name, text := range map[string]string{
		"size with a leading zero": notarize.MapRootHeader + "ledger.test/log\n042\n" + strings.Split(mr.Text(), "\n")[3] + "\n",
		"short root":               notarize.MapRootHeader + "ledger.test/log\n42\nAAEC\n",
		"extra line":               mr.Text() + "x\n",
		"other origin":             notarize.MapRootHeader + "other/log\n42\n" + strings.Split(mr.Text(), "\n")[3] + "\n",
	} {
		b, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := notarize.ParseMapRoot(b, v); !errors.Is(err, notarize.ErrBadMapRoot) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if notarize.IsMapRoot([]byte(`{"envelope":{}}`)) {
		t.Fatal("a statement entry taken for a map root")
	}
	if _, err := notarize.ParseEntry(b); err == nil {
		t.Fatal("ParseEntry accepted a map root")
	}
}

// TestMapRootTime: a root with its time line round-trips at second
// precision, and a root without one (committed before the line existed)
// still parses, with a zero Time; a time spelled otherwise than Sign
// spells it, zero, negative or past the year 9999 is refused.
func TestMapRootTime(t *testing.T) {
	s, v := noteKey(t, "ledger.test/log")
	at := time.Date(2026, 11, 30, 21, 0, 5, 0, time.UTC)
	mr := &notarize.MapRoot{Origin: "ledger.test/log", Size: 42, Root: [32]byte{9}, Time: at}
	b, err := mr.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(mr.Text(), "\n1796072405\n") {
		t.Fatalf("text %q", mr.Text())
	}
	got, err := notarize.ParseMapRoot(b, v)
	if err != nil || !got.Time.Equal(at) || got.Size != 42 || got.Root != mr.Root {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	legacy, _ := (&notarize.MapRoot{Origin: "ledger.test/log", Size: 42}).Sign(s)
	if got, err := notarize.ParseMapRoot(legacy, v); err != nil || !got.Time.IsZero() {
		t.Fatalf("a root without a time line: %+v %v", got, err)
	}
	three := strings.TrimSuffix(mr.Text(), "1796072405\n")
	for name, line := range map[string]string{
		"leading zero": "01796072405",
		"plus sign":    "+1796072405",
		"fraction":     "1796072405.5",
		"zero":         "0",
		"negative":     "-5",
		"year 10000":   "253402300800",
		"RFC 3339":     "2026-11-30T21:00:05Z",
		"empty":        "",
	} {
		b, err := note.Sign(&note.Note{Text: three + line + "\n"}, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := notarize.ParseMapRoot(b, v); !errors.Is(err, notarize.ErrBadMapRoot) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// FuzzParseMapRoot: whatever bytes a log holds, ParseMapRoot never panics,
// and what it accepts is signed and spelled as Sign spells it.
func FuzzParseMapRoot(f *testing.F) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "ledger.test/log")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	good, _ := (&notarize.MapRoot{Origin: "ledger.test/log", Size: 7}).Sign(s)
	f.Add(good)
	timed, _ := (&notarize.MapRoot{Origin: "ledger.test/log", Size: 7, Time: time.Unix(1796072405, 0)}).Sign(s)
	f.Add(timed)
	f.Add([]byte(notarize.MapRootHeader))
	f.Fuzz(func(t *testing.T, b []byte) {
		mr, err := notarize.ParseMapRoot(b, v)
		if err != nil {
			return
		}
		again, err := mr.Sign(s)
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted another spelling: %q", b)
		}
	})
}

// TestMapRootRecentAt: the recency rule of the anchored check, inclusive
// both ways; never for a root without a time, nor for one so far ahead or
// behind that the age saturates (a root dated in the year 9999 was recent
// for ever to a client that negated the saturated age).
func TestMapRootRecentAt(t *testing.T) {
	at := time.Unix(1796072405, 0).UTC()
	r := &notarize.MapRoot{Time: at}
	for _, c := range []struct {
		now  time.Time
		want bool
	}{
		{at, true},
		{at.Add(10 * time.Second), true},
		{at.Add(10*time.Second + 1), false},
		{at.Add(-10 * time.Second), true},
		{at.Add(-10*time.Second - 1), false},
		{time.Time{}, false},
		{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), false},
	} {
		if got := r.RecentAt(c.now, 10*time.Second); got != c.want {
			t.Errorf("root at %v, now %v: recent %v, want %v", at, c.now, got, c.want)
		}
	}
	far := &notarize.MapRoot{Time: time.Unix(253402300799, 0)} // the latest time ParseMapRoot accepts
	if far.RecentAt(at, 10*time.Second) {
		t.Error("a root dated in the year 9999 is recent now")
	}
	if (&notarize.MapRoot{}).RecentAt(at, time.Hour) || (*notarize.MapRoot)(nil).RecentAt(at, time.Hour) {
		t.Error("a root without a time is recent")
	}
}
