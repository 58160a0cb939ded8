package mkv

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// evSummary is what must not differ between a demuxer that reads frames and
// one that only reads block headers.
type evSummary struct {
	Type     EventType
	Offset   int64
	End      int64
	Timecode int64
	Track    uint64
	Key      bool
	Flags    byte
}

func summarize(d *Demuxer, limit int) (evs []evSummary, frames [][]byte, err error) {
	for len(evs) < limit {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			return evs, frames, nil
		}
		if err != nil {
			return evs, frames, err
		}
		evs = append(evs, evSummary{ev.Type, ev.Offset, ev.End, ev.Timecode, ev.Block.Track, ev.Key, ev.Block.Flags})
		for _, f := range ev.Block.Frames {
			frames = append(frames, append([]byte(nil), f...))
		}
	}
	return evs, frames, nil
}

// TestBlockHeadersOnly: with BlockHeaders the demuxer reports the same
// events at the same offsets as when it reads every frame, block ends
// included, but holds no frame; through a caller's Source it reads the same.
func TestBlockHeadersOnly(t *testing.T) {
	body, err := os.ReadFile(filepath.FromSlash("../../shared/reference/kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	want, wantFrames, err := summarize(NewDemuxer(bytes.NewReader(body)), 1<<20)
	if err != nil || len(wantFrames) == 0 {
		t.Fatalf("reading the capture: %v, %d frames", err, len(wantFrames))
	}
	blocks := 0
	for i, e := range want {
		if e.Type == EventBlock {
			blocks++
			if e.End <= e.Offset {
				t.Fatalf("event %d: block from %d to %d", i, e.Offset, e.End)
			}
			// A block ends where the next element starts.
			if i+1 < len(want) && want[i+1].Offset != e.End && want[i+1].Type != EventClusterEnd {
				t.Fatalf("block %d ends at %d, the next element starts at %d", i, e.End, want[i+1].Offset)
			}
		}
	}
	for _, src := range []struct {
		name string
		d    *Demuxer
	}{
		{"io.Reader", NewDemuxer(bytes.NewReader(body))},
		{"Source", NewDemuxerSource(bufio.NewReaderSize(bytes.NewReader(body), 16))},
	} {
		src.d.BlockHeaders = true
		got, frames, err := summarize(src.d, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", src.name, err)
		}
		if len(frames) != 0 {
			t.Fatalf("%s: %d frames read with BlockHeaders", src.name, len(frames))
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", src.name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: event %d is %+v, want %+v", src.name, i, got[i], want[i])
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no blocks in the capture")
	}
}

// TestReaderHeadAndCurrent: Head shows the start of a body without
// consuming it, and Current names the element being read.
func TestReaderHeadAndCurrent(t *testing.T) {
	data := append(element(IDCodecID, 1, []byte("V_MPEG4/ISO/AVC")), element(IDVoid, 1, []byte{1, 2})...)
	r := NewReaderSource(bufio.NewReader(bytes.NewReader(data)))
	e, err := r.Next()
	if err != nil || e.ID != IDCodecID || r.Current() != e {
		t.Fatalf("first element %+v %v; current %+v", e, err, r.Current())
	}
	h, err := r.Head(6)
	if err != nil || string(h) != "V_MPEG" {
		t.Fatalf("head %q %v", h, err)
	}
	if h, err = r.Head(100); err != nil || string(h) != "V_MPEG4/ISO/AVC" {
		t.Fatalf("head beyond the body: %q %v", h, err)
	}
	if d, err := r.Data(); err != nil || string(d) != "V_MPEG4/ISO/AVC" {
		t.Fatalf("data after head: %q %v", d, err)
	}
	if e, err = r.Next(); err != nil || e.ID != IDVoid || r.Current().Offset != e.Offset {
		t.Fatalf("second element %+v %v", e, err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

// FuzzDemuxerBlockHeaders: on any input, reading block headers only gives
// the events reading whole blocks gives, at the same offsets; it may find
// a cut-off block one event later (its payload is skipped, not read), but
// never accepts what the other refuses.
func FuzzDemuxerBlockHeaders(f *testing.F) {
	for _, p := range []string{
		"../../shared/reference/kvssink-capture/04_putMedia.body",
		"../testdata/h264-aac.mkv",
	} {
		b, err := os.ReadFile(filepath.FromSlash(p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 6000)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		limit := 4*len(data) + 16
		full := NewDemuxer(bytes.NewReader(data))
		full.Reader().MaxElementSize = 1 << 24
		want, _, wantErr := summarize(full, limit)
		head := NewDemuxerSource(bufio.NewReaderSize(bytes.NewReader(data), 16))
		head.BlockHeaders = true
		head.Reader().MaxElementSize = 1 << 24
		got, frames, gotErr := summarize(head, limit)
		if len(frames) != 0 {
			t.Fatalf("%d frames read with BlockHeaders", len(frames))
		}
		n := min(len(want), len(got))
		for i := range n {
			if got[i] != want[i] {
				t.Fatalf("event %d is %+v, want %+v", i, got[i], want[i])
			}
		}
		switch {
		case wantErr == nil && (gotErr != nil || len(got) != len(want)):
			t.Fatalf("whole blocks: %d events and the end; block headers: %d events, %v", len(want), len(got), gotErr)
		case wantErr != nil && gotErr == nil && len(got) < limit:
			t.Fatalf("whole blocks fail (%v) after %d events; block headers read %d events to the end", wantErr, len(want), len(got))
		}
	})
}
