package source

import (
	"bytes"
	"context"
	_ "embed" // the test clip
	"io"
	"log/slog"
	"time"

	"github.com/kvsgo/kvsgo/internal/codec"
)

//go:embed testsrc.h264
var testClip []byte

// TestSource loops a small built-in H.264 clip (320x240, 30 fps, a key frame
// every second) forever, in real time, with continuous timestamps. It needs
// no camera and no other program.
type TestSource struct {
	// Loops limits the repetitions; 0 loops until ctx ends.
	Loops int
	// Fast sends as fast as the sink takes frames.
	Fast   bool
	Now    func() time.Time
	Logger *slog.Logger
}

// Run implements Source.
func (s *TestSource) Run(ctx context.Context, sink Sink) error {
	a := &AnnexB{R: &loopReader{data: testClip, loops: s.Loops}, Codec: codec.H264, FPS: 30, Pace: !s.Fast, Now: s.Now, Logger: s.Logger}
	return a.Run(ctx, sink)
}

// loopReader repeats data loops times (forever when 0).
type loopReader struct {
	data  []byte
	loops int
	done  int
	r     *bytes.Reader
}

func (l *loopReader) Read(p []byte) (int, error) {
	for {
		if l.r == nil {
			if l.loops > 0 && l.done >= l.loops {
				return 0, io.EOF
			}
			l.r = bytes.NewReader(l.data)
			l.done++
		}
		n, err := l.r.Read(p)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			l.r = nil
		}
	}
}
