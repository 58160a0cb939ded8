// Package live hands the frames PutMedia is receiving to live viewers
// (WebRTC, internal/whep) as they arrive, before their fragment is stored.
// A Hub has one Stream per stream name; each frame is packetized into RTP
// once and the same packets go to every viewer of the stream. A viewer
// starts at the stream's next key frame, and after falling behind skips to
// the next key frame again, so a slow viewer never holds up ingest or the
// other viewers.
package live

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/pion/rtp"

	"github.com/kvsgo/kvsgo/internal/codec"
)

// Reasons a stream cannot be watched live; the page falls back to HLS.
var (
	// ErrNotLive: no producer is sending the stream.
	ErrNotLive = errors.New("no producer is streaming it right now")
	// ErrReordered: the stream has B-frames (frames sent before frames shown
	// earlier). Browsers' WebRTC decoders show frames in the order they
	// arrive, so the picture would jump back and forth.
	ErrReordered = errors.New("the stream has B-frames, which WebRTC players cannot show in order; it plays over HLS")
	// ErrCodec: the stream's video is neither H.264 nor H.265.
	ErrCodec = errors.New("its video is neither H.264 nor H.265, the codecs kvsgo sends over WebRTC; it plays over HLS")
	// ErrCodecChanged: a new producer session sends another codec than the
	// one the viewer's session negotiated.
	ErrCodecChanged = errors.New("its producer switched codec (H.264 and H.265); connect again")
	// ErrNoVideo: the stream has no video track.
	ErrNoVideo = errors.New("it has no video track")
	// ErrStarting: the producer has connected but its header has not come
	// yet; a moment later the stream can be watched.
	ErrStarting = errors.New("its producer has connected but sent no video yet")
	// ErrClosed: the hub was shut down.
	ErrClosed = errors.New("the server is shutting down")
)

// ViewerQueue is how many frames a viewer may fall behind before it skips
// to the next key frame: two seconds of 30 fps video.
const ViewerQueue = 60

// Frame is one video frame as RTP packets, shared by every viewer: they
// must not change it. Their sequence numbers are left to each viewer.
type Frame struct {
	Key     bool
	Packets []*rtp.Packet
}

// Hub holds the live streams by name. Create it with NewHub.
type Hub struct {
	log *slog.Logger

	mu      sync.Mutex
	streams map[string]*Stream
	closed  bool
}

// NewHub returns an empty Hub.
func NewHub(log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{log: log, streams: map[string]*Stream{}}
}

// stream returns the named stream, made on first use.
func (h *Hub) stream(name string) *Stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.streams[name]
	if st == nil {
		st = &Stream{name: name, viewers: map[*Viewer]struct{}{}}
		h.streams[name] = st
	}
	return st
}

// Status tells whether a stream can be watched live now: nil, or why not.
func (h *Hub) Status(name string) error {
	h.mu.Lock()
	st, closed := h.streams[name], h.closed
	h.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if st == nil {
		return ErrNotLive
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.statusLocked()
}

// Codec is the video codec of a live stream (H.264 or H.265), which the
// viewer's session must negotiate; 0 when it is not known yet.
func (h *Hub) Codec(name string) codec.Codec {
	h.mu.Lock()
	st := h.streams[name]
	h.mu.Unlock()
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.kind
}

// Viewers returns how many viewers watch the named stream.
func (h *Hub) Viewers(name string) int {
	h.mu.Lock()
	st := h.streams[name]
	h.mu.Unlock()
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.viewers)
}

// Subscribe adds a viewer to a live stream. It fails with ErrNotLive,
// ErrReordered, ErrCodec or ErrNoVideo when the stream cannot be watched.
func (h *Hub) Subscribe(name string) (*Viewer, error) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	st := h.stream(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.statusLocked(); err != nil {
		return nil, err
	}
	v := &Viewer{st: st, codec: st.kind, frames: make(chan *Frame, ViewerQueue), done: make(chan struct{}), waitKey: true}
	st.viewers[v] = struct{}{}
	return v, nil
}

// Close ends every viewer, and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	streams := make([]*Stream, 0, len(h.streams))
	for _, st := range h.streams {
		streams = append(streams, st)
	}
	h.mu.Unlock()
	for _, st := range streams {
		st.endViewers(ErrClosed)
	}
}

// Stream is one stream's live state: its producer's codec, and its viewers.
type Stream struct {
	name string

	mu        sync.Mutex
	producers int         // PutMedia sessions sending (one, but a new one may open before the old one has closed)
	codec     error       // nil when the video can be sent
	kind      codec.Codec // the video's codec, once a header has come
	reordered bool
	viewers   map[*Viewer]struct{}
}

func (st *Stream) statusLocked() error {
	switch {
	case st.producers == 0:
		return ErrNotLive
	case st.reordered:
		return ErrReordered
	default:
		return st.codec
	}
}

// send gives a frame to every viewer; a viewer waiting for a key frame
// skips the others, and one whose queue is full drops this frame and waits
// for the next key frame.
func (st *Stream) send(f *Frame) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for v := range st.viewers {
		if v.waitKey && !f.Key {
			if v.started {
				v.dropped++
			}
			continue
		}
		select {
		case v.frames <- f:
			v.waitKey, v.started = false, true
		default:
			v.waitKey = true
			v.dropped++
		}
	}
}

func (st *Stream) hasViewers() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.viewers) > 0
}

// endViewers ends every viewer of the stream with err.
func (st *Stream) endViewers(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for v := range st.viewers {
		v.endLocked(err)
	}
}

// Viewer receives a stream's frames from its next key frame on.
type Viewer struct {
	st     *Stream
	codec  codec.Codec
	frames chan *Frame
	done   chan struct{}

	// Guarded by st.mu.
	waitKey bool
	started bool // it has had a frame
	dropped int
	err     error
}

// Codec is the codec of the frames the viewer gets.
func (v *Viewer) Codec() codec.Codec { return v.codec }

// Frames delivers the frames to send, in order.
func (v *Viewer) Frames() <-chan *Frame { return v.frames }

// Done is closed when the viewer ends: Close, or the stream can no longer
// be watched live (Err says why).
func (v *Viewer) Done() <-chan struct{} { return v.done }

// Err is why the viewer ended; nil before.
func (v *Viewer) Err() error {
	v.st.mu.Lock()
	defer v.st.mu.Unlock()
	return v.err
}

// Dropped is how many frames the viewer missed by falling behind.
func (v *Viewer) Dropped() int {
	v.st.mu.Lock()
	defer v.st.mu.Unlock()
	return v.dropped
}

// Close removes the viewer from its stream.
func (v *Viewer) Close() {
	v.st.mu.Lock()
	defer v.st.mu.Unlock()
	v.endLocked(errViewerClosed)
}

var errViewerClosed = errors.New("the viewer left")

func (v *Viewer) endLocked(err error) {
	if v.err != nil {
		return
	}
	v.err = err
	delete(v.st.viewers, v)
	close(v.done)
}
