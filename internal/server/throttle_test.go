package server

import (
	"testing"
	"time"
)

func TestLimiterAllowsRatePerSecondPerKey(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLimiter(func() time.Time { return now })
	for i := range 5 {
		if !l.allow("getMedia/a", 5) {
			t.Fatalf("call %d of a burst of 5 refused", i+1)
		}
	}
	if l.allow("getMedia/a", 5) {
		t.Fatal("sixth call within the second allowed")
	}
	if !l.allow("getMedia/b", 5) {
		t.Fatal("another stream's first call refused")
	}
	now = now.Add(200 * time.Millisecond) // one token back
	if !l.allow("getMedia/a", 5) || l.allow("getMedia/a", 5) {
		t.Fatal("after 200 ms exactly one more call should pass")
	}
	now = now.Add(time.Hour)
	for i := range 5 {
		if !l.allow("getMedia/a", 5) {
			t.Fatalf("after an hour, call %d refused: the bucket holds at most 5", i+1)
		}
	}
	if l.allow("getMedia/a", 5) {
		t.Fatal("the bucket filled beyond its size while idle")
	}
}
