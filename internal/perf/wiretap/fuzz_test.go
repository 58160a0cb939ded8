package wiretap

import (
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"
)

// scanConn runs the request scanner over a client's bytes cut at the
// given points, and returns what it found with the times left out.
func scanConn(b []byte, cuts []int) ([]string, []Session) {
	var reqs []string
	var recs []*recorder
	s := &requestScanner{onRequest: func(r Request, hr *http.Request) *recorder {
		reqs = append(reqs, r.Method+" "+r.Path)
		if r.Path == "/putMedia" {
			rec := &recorder{s: &Session{Stream: hr.Header.Get("x-amzn-stream-name")}, cur: -1}
			recs = append(recs, rec)
			return rec
		}
		return nil
	}}
	prev := 0
	for _, c := range append(cuts, len(b)) {
		if c > prev && c <= len(b) {
			s.feed(b[prev:c], t0)
			prev = c
		}
	}
	var out []Session
	for _, r := range recs {
		c := r.s.clone()
		c.Opened, c.FirstBody, c.BodyEnded = time.Time{}, time.Time{}, time.Time{}
		for i := range c.Frames {
			c.Frames[i].At = time.Time{}
		}
		for i := range c.Fragments {
			c.Fragments[i].Started, c.Fragments[i].Completed = time.Time{}, time.Time{}
		}
		out = append(out, c)
	}
	return reqs, out
}

// FuzzRequestScanner: any bytes on a connection, cut anywhere, give the
// same requests, frames and fragments as in one piece, and never a panic.
func FuzzRequestScanner(f *testing.F) {
	conn, _ := connection(f, true)
	f.Add(conn, uint16(100), uint16(5000))
	f.Add([]byte("POST /putMedia HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\x1aE\xdf\xa3\x80\r\n0\r\n\r\n"), uint16(3), uint16(40))
	if b, err := os.ReadFile("../../../../shared/reference/kvssink-capture/04_putMedia.head"); err == nil {
		f.Add(b, uint16(10), uint16(200))
	}
	f.Fuzz(func(t *testing.T, b []byte, c1, c2 uint16) {
		r1, s1 := scanConn(b, nil)
		r2, s2 := scanConn(b, []int{int(min(c1, c2)), int(max(c1, c2))})
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("requests differ when cut: %v vs %v", r1, r2)
		}
		if !reflect.DeepEqual(s1, s2) {
			t.Fatalf("sessions differ when cut at %d and %d:\n%+v\n%+v", c1, c2, s1, s2)
		}
	})
}

// FuzzAckScanner: no panic, and what it finds does not depend on where the
// bytes were cut.
func FuzzAckScanner(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n3f\r\n{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":17,\"FragmentNumber\":\"9\"}\n\r\n"), uint16(30))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		run := func(cut int) []AckAt {
			rec := &recorder{s: &Session{}, cur: -1}
			a := &ackScanner{rec: func() *recorder { return rec }}
			cut = min(cut, len(b))
			a.feed(b[:cut], t0)
			a.feed(b[cut:], t0)
			return rec.s.Acks
		}
		if one, two := run(len(b)), run(int(cut)); !reflect.DeepEqual(one, two) {
			t.Fatalf("acks differ when cut at %d: %+v vs %+v", cut, one, two)
		}
	})
}
