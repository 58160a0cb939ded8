package source

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kvsgo/kvsgo/internal/codec"
)

// Options are the settings every source takes.
type Options struct {
	// Camera settings for rpicam and v4l2 sources.
	Camera Camera
	// RTSPTransport is "tcp" (default) or "udp".
	RTSPTransport string
	// FPS times raw streams that carry no timing.
	FPS float64
	// Fast sends a file as fast as the service takes it instead of in
	// real time.
	Fast   bool
	Stdin  io.Reader
	Now    func() time.Time
	Logger *slog.Logger
}

// Open returns the source a --source value names: "testsrc", "rpicam",
// "v4l2:/dev/videoN", "gst:PIPELINE", "exec:COMMAND", "rtsp://…", "-"
// (stdin) or a file,
// whose format is recognised from its first bytes. The closer,
// when not nil, releases the input.
func Open(spec string, opts Options) (Source, io.Closer, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case spec == "rpicam":
		return RPiCam(opts.Camera, opts, DeviceModel()), nil, nil
	case strings.HasPrefix(spec, "v4l2:"):
		p, err := V4L2(context.Background(), strings.TrimPrefix(spec, "v4l2:"), opts.Camera, opts)
		return p, nil, err
	case strings.HasPrefix(spec, "gst:"):
		return GStreamer(strings.TrimPrefix(spec, "gst:"), opts), nil, nil
	case strings.HasPrefix(spec, "exec:"):
		return Exec(strings.TrimPrefix(spec, "exec:"), opts), nil, nil
	case strings.HasPrefix(spec, "rtsp://"), strings.HasPrefix(spec, "rtsps://"):
		return &RTSP{URL: spec, Transport: opts.RTSPTransport, Now: opts.Now, Logger: opts.Logger}, nil, nil
	}
	switch spec {
	case "testsrc":
		return &TestSource{Fast: opts.Fast, Now: opts.Now, Logger: opts.Logger}, nil, nil
	case "-":
		if opts.Stdin == nil {
			opts.Stdin = os.Stdin
		}
		return &stdin{r: opts.Stdin, opts: opts}, nil, nil
	}
	f, err := os.Open(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open the source %q: %w (give a file, - for stdin, or testsrc)", spec, err)
	}
	src, err := Sniff(f, !opts.Fast, opts)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", spec, err)
	}
	return src, f, nil
}

// Label names a --source value in the log: short for programs (their
// command is logged when they start), without the password of a camera
// URL.
func Label(spec string) string {
	switch {
	case strings.HasPrefix(spec, "gst:"):
		return "gst"
	case strings.HasPrefix(spec, "exec:"):
		return "exec"
	case strings.HasPrefix(spec, "rtsp://"), strings.HasPrefix(spec, "rtsps://"):
		if u, err := url.Parse(spec); err == nil {
			return u.Redacted()
		}
		return "rtsp"
	}
	return spec
}

// Live reports whether a --source value is a live source: a camera or a
// program kvsgo runs, which sends what it has from whenever kvsgo
// (re)connects, so that the pictures before its first key frame are not
// kvsgo's to keep.
func Live(spec string) bool {
	switch {
	case spec == "rpicam", strings.HasPrefix(spec, "v4l2:"), strings.HasPrefix(spec, "gst:"), strings.HasPrefix(spec, "exec:"),
		strings.HasPrefix(spec, "rtsp://"), strings.HasPrefix(spec, "rtsps://"):
		return true
	}
	return false
}

// Sniff recognises the format of r from its first bytes.
func Sniff(r io.Reader, pace bool, opts Options) (Source, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(1 << 12)
	if len(head) == 0 {
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the source: %w", err)
		}
		return nil, fmt.Errorf("%w: the input is empty", ErrUnknownFormat)
	}
	switch {
	case bytes.HasPrefix(head, []byte{0x1a, 0x45, 0xdf, 0xa3}):
		return &Matroska{R: br, Pace: pace, Now: opts.Now, Logger: opts.Logger}, nil
	case isMPEGTS(head):
		return &MPEGTS{R: br, Pace: pace, Now: opts.Now, Logger: opts.Logger}, nil
	case len(head) >= 8 && string(head[4:8]) == "ftyp":
		return sniffedMP4(r, br, pace, opts), nil
	}
	if c, ok := annexBCodec(head); ok {
		return &AnnexB{R: br, Codec: c, FPS: opts.FPS, Pace: pace, Now: opts.Now, Logger: opts.Logger}, nil
	}
	return nil, fmt.Errorf("%w: not Annex-B H.264/H.265, Matroska/WebM, MPEG-TS or MP4 (first bytes % x)", ErrUnknownFormat, head[:min(8, len(head))])
}

// sniffedMP4 reads a file in place; from a pipe, the MP4 is buffered whole
// before it is sent, so it is sent in real time like a file unless --fast.
func sniffedMP4(r io.Reader, br *bufio.Reader, pace bool, opts Options) *MP4 {
	m := &MP4{R: br, Pace: pace || !opts.Fast, Now: opts.Now, Logger: opts.Logger}
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			m.R, m.Pace = f, pace
		}
	} else if _, ok := r.(sizedReaderAt); ok {
		m.R, m.Pace = r, pace
	}
	return m
}

func isMPEGTS(b []byte) bool {
	if len(b) < 188*2+1 {
		return len(b) >= 1 && b[0] == 0x47 && (len(b) < 189 || b[188] == 0x47)
	}
	return b[0] == 0x47 && b[188] == 0x47 && b[376] == 0x47
}

// annexBCodec tells H.264 from H.265 by the first NAL unit after a start
// code: streams begin with an AUD or a parameter set.
func annexBCodec(b []byte) (codec.Codec, bool) {
	i := bytes.Index(b, []byte{0, 0, 1})
	if i < 0 || i > 64 || i+4 >= len(b) {
		return 0, false
	}
	h0, h1 := b[i+3], b[i+4]
	if h0&0x80 != 0 {
		return 0, false // forbidden_zero_bit
	}
	h265 := (h0 >> 1) & 0x3f
	if h1 == 0x01 && h265 >= 32 && h265 <= 40 { // VPS, SPS, PPS, AUD, SEI with layer 0, tid 1
		return codec.H265, true
	}
	switch h0 & 0x1f {
	case 5, 6, 7, 8, 9:
		return codec.H264, true
	}
	if h1 == 0x01 && h265 < 32 {
		return codec.H265, true
	}
	return 0, false
}
