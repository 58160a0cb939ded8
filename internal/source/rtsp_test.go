package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// testCamera is an RTSP camera in the test process, serving a fixture.
type testCamera struct {
	mu      sync.RWMutex // guards stream while the server starts
	srv     *gortsplib.Server
	stream  *gortsplib.ServerStream
	playing chan struct{}
	once    sync.Once
}

func (c *testCamera) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

func (c *testCamera) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

func (c *testCamera) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnResponse says the client plays once the server has answered PLAY (the
// answer with RTP-Info): from then on the stream reaches it. Before, what
// the camera sends is lost, which would make the test's count wrong, not
// kvsgo's.
func (c *testCamera) OnResponse(_ *gortsplib.ServerConn, res *base.Response) {
	if _, ok := res.Header["RTP-Info"]; ok && res.StatusCode == base.StatusOK {
		c.once.Do(func() { close(c.playing) })
	}
}

func startCamera(t *testing.T, addr string, sps, pps []byte) *testCamera {
	t.Helper()
	c := &testCamera{playing: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.srv = &gortsplib.Server{Handler: c, RTSPAddress: addr}
	if err := c.srv.Start(); err != nil {
		t.Fatal(err)
	}
	c.stream = &gortsplib.ServerStream{Server: c.srv, Desc: &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps, PPS: pps}},
	}}}}
	if err := c.stream.Initialize(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *testCamera) close() {
	c.stream.Close()
	c.srv.Close()
}

// send writes access units as RTP, 30 fps worth of timestamps, once a
// client plays.
func (c *testCamera) send(t *testing.T, aus [][][]byte, start uint32) {
	t.Helper()
	select {
	case <-c.playing:
	case <-time.After(20 * time.Second):
		t.Error("no client played the camera")
		return
	}
	medi := c.stream.Desc.Medias[0]
	enc, err := medi.Formats[0].(*format.H264).CreateEncoder()
	if err != nil {
		t.Error(err)
		return
	}
	for i, au := range aus {
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Error(err)
			return
		}
		for _, p := range pkts {
			p.Timestamp = start + uint32(i*3000)
			if err := c.stream.WritePacketRTP(medi, p); err != nil {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type rtspSink struct {
	mu      sync.Mutex
	starts  int
	tracks  []media.Track
	frames  []media.Frame
	dropped int
}

var _ DropSink = (*rtspSink)(nil)

func (s *rtspSink) Drop(_ uint8, n int, _ Loss) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropped += n
}

func (s *rtspSink) Start(t []media.Track) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts++
	s.tracks = t
	return nil
}

func (s *rtspSink) Frame(f media.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.Data = append([]byte(nil), f.Data...)
	s.frames = append(s.frames, f)
	return nil
}

func (s *rtspSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

// TestRTSPCameraWithRestart: every frame an RTSP camera sends arrives
// byte for byte, without transcoding. When the camera restarts, the source
// reconnects and the timestamps go on; a restart costs exactly what the
// camera sends while kvsgo is not connected (here nothing: the camera
// waits for PLAY) and the pictures before the camera's first key frame
// after reconnecting, which are reported. Here the camera comes back in the
// middle of a GOP: frames 10 to 24 of the clip go, 25 to 89 arrive.
func TestRTSPCameraWithRestart(t *testing.T) {
	data := mediatest.ReadFixture(t, "h264-baseline.h264")
	r := codec.NewAnnexBReader(bytes.NewReader(data), codec.H264)
	var aus [][][]byte
	params := &codec.Params{Codec: codec.H264}
	for {
		au, err := r.ReadAccessUnit()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		cp := make([][]byte, len(au))
		for i, n := range au {
			cp[i] = append([]byte(nil), n...)
		}
		_, _ = params.Update(cp)
		aus = append(aus, cp)
	}
	if len(aus) != 90 || !codec.H264.IsKey(aus[0]) || !codec.H264.IsKey(aus[25]) || codec.H264.IsKey(aus[10]) {
		t.Fatalf("the fixture: %d access units, key frames every 25", len(aus))
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	var pps []byte
	cfg, _ := params.CodecPrivate()
	if d, err := codec.ParseAVCC(cfg); err == nil {
		pps = d.PPS[0]
	}
	cam := startCamera(t, addr, params.SPS(), pps)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &rtspSink{}
	done := make(chan error, 1)
	var logs syncBuffer
	go func() {
		done <- (&RTSP{URL: fmt.Sprintf("rtsp://user:secret@%s/cam", addr), Logger: slog.New(slog.NewTextHandler(&logs, nil))}).Run(ctx, sink)
	}()

	first, second := aus, aus[10:]
	want := append(append([][][]byte{}, first...), aus[25:]...)
	cam.send(t, first, 1000)
	waitFrames(t, sink, len(first))
	cam.close() // the camera goes away, and comes back on the same address
	cam = startCamera(t, addr, params.SPS(), pps)
	defer cam.close()
	cam.send(t, second, 500000)
	waitFrames(t, sink, len(want))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.frames) != len(want) || sink.dropped != 25-10 || !strings.Contains(logs.String(), "before its first key frame since connecting") {
		t.Fatalf("%d frames, want %d; %d reported lost, want 15; log:\n%s", len(sink.frames), len(want), sink.dropped, logs.String())
	}
	if sink.starts != 1 || sink.tracks[0].Width != 640 || sink.tracks[0].CodecID != media.CodecH264 {
		t.Fatalf("tracks announced %d times: %+v", sink.starts, sink.tracks)
	}
	for i, f := range sink.frames {
		if !bytes.Equal(f.Data, codec.H264.AppendLengthPrefixed(nil, want[i])) || f.Key != codec.H264.IsKey(want[i]) {
			t.Fatalf("frame %d is not the camera's, byte for byte", i)
		}
		if i > 0 && f.DTS <= sink.frames[i-1].DTS {
			t.Fatalf("frame %d at %v after %v", i, f.DTS, sink.frames[i-1].DTS)
		}
	}
}

func waitFrames(t *testing.T, s *rtspSink, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d frames after 20 s, want %d", s.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
