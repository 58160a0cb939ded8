package store

import (
	"errors"
	"testing"
)

// TestRecent: the newest fragments, oldest first, at most n; an unknown
// stream is an error.
func TestRecent(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.CreateStream(NewStream{Name: "a", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	a := st.ID
	if got, err := s.Recent(a, 3); err != nil || len(got) != 0 {
		t.Fatalf("empty stream: %v %v", got, err)
	}
	base := int64(1_800_000_000_000)
	for i := range int64(5) {
		nf := NewFragment{Seq: s.ReserveFragment(), Header: []byte("header"), Body: make([]byte, 100+i),
			ProducerMS: base + i*1000, ServerMS: base + i*1000, DurationMS: 1000, Timecode: base + i*1000}
		if _, _, err := s.AppendFragment(a, nf); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Recent(a, 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("Recent: %d %v", len(got), err)
	}
	for i, f := range got {
		if f.ProducerMS != base+int64(2+i)*1000 || f.BodyLen != int64(102+i) {
			t.Fatalf("fragment %d: %+v", i, f)
		}
	}
	if all, _ := s.Recent(a, 10); len(all) != 5 || all[0].ProducerMS != base {
		t.Fatalf("all: %+v", all)
	}
	if _, err := s.Recent("nope", 3); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("unknown stream: %v", err)
	}
}
