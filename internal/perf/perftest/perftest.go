// Package perftest holds what the harness's tests share: a real kvsgo
// server in the test process, and Matroska streams like a producer's.
package perftest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/mkv"
)

// StartServer runs kvsgo's server with a fresh store on 127.0.0.1 for the
// test, accepting any well-formed signature, and returns its URL.
func StartServer(t testing.TB) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(store.Options{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Logger: log})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		st.Close()
	})
	return hs.URL
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Block is a frame of a stream Stream wrote.
type Block struct {
	Track    uint64
	Timecode int64 // absolute, ms
	Key      bool
	Size     int
}

// Stream writes a KVS-style Matroska stream with mkv.Writer: a video and
// an audio track, five fragments of 30 video frames starting at start
// (ms), some fragment tags, an END_OF_FRAGMENT, and a second header part
// way as on a new connection. It returns the bytes and the frames in them.
// Small makes the frames a few bytes each (a seed a fuzzer can work with).
func Stream(t testing.TB, start int64, small bool) ([]byte, []Block) {
	t.Helper()
	var buf strings.Builder
	h := mkv.Header{Tracks: []mkv.Track{
		{Number: 1, Type: mkv.TrackTypeVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x42, 0, 0x1e, 0xff, 0xe0, 0, 0xf8}, Width: 640, Height: 480},
		{Number: 2, Type: mkv.TrackTypeAudio, CodecID: "A_AAC", CodecPrivate: []byte{0x12, 0x10}, SamplingFrequency: 48000, Channels: 1},
	}}
	w, err := mkv.NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []Block
	write := func(track uint64, tc int64, key bool, size int) {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		if err := w.WriteFrame(track, time.Duration(tc)*time.Millisecond, key, data); err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, Block{Track: track, Timecode: tc, Key: key, Size: size})
	}
	tc := start
	for frag := range 5 {
		if frag == 2 {
			w.AddFragmentTag("camera", "porch")
		}
		if frag == 3 {
			if err := w.EndFragment(); err != nil {
				t.Fatal(err)
			}
			if err := w.WriteHeader(); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 30 {
			size := 900 + (i*37)%500
			if i == 0 {
				size = 20000 + frag*1000 // key frames are big: more than one read
			}
			if small {
				size = 1 + i%3
			}
			write(1, tc, i == 0, size)
			if i%3 == 1 {
				write(2, tc+5, false, 200)
			}
			tc += 33
		}
	}
	if err := w.EndFragment(); err != nil {
		t.Fatal(err)
	}
	return []byte(buf.String()), blocks
}
