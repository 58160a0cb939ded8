// Package server is a local Kinesis Video Streams: the control plane,
// PutMedia ingest, GetMedia and the archived-media APIs, on one HTTP
// address, in the wire format the real AWS clients expect.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/internal/live"
	"github.com/kvsgo/kvsgo/internal/playback"
	"github.com/kvsgo/kvsgo/internal/sigv4"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/internal/whep"
)

// Config configures a Server.
type Config struct {
	Store  *store.Store
	Logger *slog.Logger
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// Credentials: access key ID → secret. Empty accepts any well-formed
	// signature.
	Credentials map[string]string
	// AdvertiseURL is what GetDataEndpoint returns; when empty, the
	// server's own address as the client reached it.
	AdvertiseURL string
	// Limits; zero means the service's.
	MaxConnectionDuration time.Duration // PutMedia, 45 min
	MaxFragmentDuration   time.Duration // 20 s
	MaxFragmentSize       int64         // 50 MB
	MaxTracks             int           // 3
	IdleInterval          time.Duration // IDLE acks, 3 s
	IdleTimeout           time.Duration // PutMedia ends after this long without data, 30 s
	// GetMediaLinger is how long a GetMedia reader that has caught up
	// with the end of a producer's stream (its PutMedia body finished)
	// goes on waiting for more before it ends, 3 s as the service's.
	GetMediaLinger time.Duration
	// NoThrottle turns off the service's per-stream call limits
	// (ClientLimitExceededException), for load tests.
	NoThrottle bool
	// RequestTimeout bounds reading a request body (PutMedia's excepted,
	// which IdleTimeout and MaxConnectionDuration bound) and each write of
	// a response, so that slow or silent clients cannot hold connections;
	// 30 s.
	RequestTimeout time.Duration
	// IngestBuffer is the memory a PutMedia session reads through: the
	// fragment is written to disk as it fills, 32 KiB.
	IngestBuffer int
	// UI configures the web page at / (ui.go).
	UI UIConfig
	// WebRTCHostIP keeps the local addresses the live view over WebRTC
	// (WHEP, whep.go) offers as host candidates; loopback only when nil.
	WebRTCHostIP func(net.IP) bool
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxConnectionDuration == 0 {
		c.MaxConnectionDuration = 45 * time.Minute
	}
	if c.MaxFragmentDuration == 0 {
		c.MaxFragmentDuration = 20 * time.Second
	}
	if c.MaxFragmentSize == 0 {
		c.MaxFragmentSize = 50_000_000
	}
	if c.MaxTracks == 0 {
		c.MaxTracks = 3
	}
	if c.IdleInterval == 0 {
		c.IdleInterval = 3 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.GetMediaLinger == 0 {
		c.GetMediaLinger = 3 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.IngestBuffer == 0 {
		c.IngestBuffer = 32 << 10
	}
}

// Server serves the KVS APIs. Create it with New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	verifier *sigv4.Verifier
	metrics  *metrics
	mux      *http.ServeMux
	limits   *limiter
	playback *playback.Sessions
	// live gets PutMedia's frames as they arrive; whep sends them to
	// browsers over WebRTC.
	live *live.Hub
	whep *whep.Service
	// chunkStart begins every in-band error chunk: EBML header, Segment.
	chunkStart []byte

	// ctx ends long-lived requests (PutMedia, GetMedia) on Shutdown.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Server.
func New(cfg Config) *Server {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		store:      cfg.Store,
		verifier:   &sigv4.Verifier{Secrets: cfg.Credentials, Now: cfg.Now},
		metrics:    newMetrics(),
		mux:        http.NewServeMux(),
		limits:     newLimiter(cfg.Now),
		chunkStart: ebmlAndSegment(),
		ctx:        ctx,
		cancel:     cancel,
		live:       live.NewHub(cfg.Logger),
	}
	json := map[string]func(*request) (any, error){
		"/createStream":        s.createStream,
		"/describeStream":      s.describeStream,
		"/listStreams":         s.listStreams,
		"/deleteStream":        s.deleteStream,
		"/updateStream":        s.updateStream,
		"/updateDataRetention": s.updateDataRetention,
		"/getDataEndpoint":     s.getDataEndpoint,
		"/tagStream":           s.tagStream,
		"/untagStream":         s.untagStream,
		"/listTagsForStream":   s.listTagsForStream,
		"/TagResource":         s.tagResource,
		"/UntagResource":       s.untagResource,
		"/ListTagsForResource": s.listTagsForResource,
		"/listFragments":       s.listFragments,
		"/getImages":           s.getImages,

		"/getHLSStreamingSessionURL":  s.getHLSStreamingSessionURL,
		"/getDASHStreamingSessionURL": s.getDASHStreamingSessionURL,
	}
	s.playback = s.newPlayback()
	for path, h := range json {
		s.mux.Handle("POST "+path, s.jsonAPI(strings.TrimPrefix(path, "/"), h))
	}
	s.mux.Handle("POST /putMedia", s.streamingAPI("putMedia", false, s.putMedia))
	s.mux.Handle("POST /getMedia", s.streamingAPI("getMedia", true, s.getMedia))
	s.mux.Handle("POST /getMediaForFragmentList", s.streamingAPI("getMediaForFragmentList", true, s.getMediaForFragmentList))
	s.mux.Handle("POST /getClip", s.streamingAPI("getClip", true, s.getClip))
	s.mux.Handle("GET /hls/v1/{resource}", s.playbackResource(playback.KindHLS))
	s.mux.Handle("GET /dash/v1/{resource}", s.playbackResource(playback.KindDASH))
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	s.registerUI()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "UnknownOperationException", "kvsgo serve has no operation %s %s", r.Method, r.URL.Path))
	})
	return s
}

// Handler returns the HTTP handler. Every response carries an
// x-amzn-RequestId, as the service's do.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-amzn-RequestId", newRequestID())
		s.mux.ServeHTTP(s.guard(w, r), r)
	})
}

// newRequestID returns a random UUID, the form of the service's request IDs.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// allow applies the service's per-stream call limit for op.
func (s *Server) allow(op string, id store.StreamID, tps float64) *apiError {
	if s.cfg.NoThrottle || s.limits.allow(op+"/"+string(id), tps) {
		return nil
	}
	return throttled("%s is limited to %g calls a second per stream.", op, tps)
}

// Shutdown ends the long-lived PutMedia and GetMedia requests and waits for
// their handlers to return, at most until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	s.live.Close()
	if s.whep != nil {
		if err := s.whep.Close(ctx); err != nil {
			return err
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// request is one authenticated API call.
type request struct {
	r    *http.Request
	w    http.ResponseWriter
	body []byte
	op   string
}

func (s *Server) authenticate(r *http.Request, payloadHash string) *apiError {
	if _, err := s.verifier.Verify(r, payloadHash); err != nil {
		ae := toAPIError(err)
		s.log.Warn("request refused", "op", r.URL.Path, "remote", r.RemoteAddr, "error", err)
		return ae
	}
	return nil
}

// jsonAPI wraps a JSON-in, JSON-out operation: body read (bounded),
// signature verified over it, errors in the AWS shape.
func (s *Server) jsonAPI(op string, h func(*request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		status := http.StatusOK
		defer func() { s.metrics.request(op, status, s.cfg.Now().Sub(start)) }()
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
		if err != nil {
			status = 400
			writeError(w, errorf(400, "SerializationException", "reading the request body: %v", err))
			return
		}
		if len(body) > maxRequestBody {
			status = 413
			writeError(w, errorf(413, "SerializationException", "request body over %d bytes", maxRequestBody))
			return
		}
		sum := sha256.Sum256(body)
		if ae := s.authenticate(r, hex.EncodeToString(sum[:])); ae != nil {
			status = ae.Status
			writeError(w, ae)
			return
		}
		out, err := h(&request{r: r, w: w, body: body, op: op})
		if err != nil {
			ae := toAPIError(err)
			status = ae.Status
			if ae.Status >= 500 {
				s.log.Error("request failed", "op", op, "error", err)
			}
			writeError(w, ae)
			return
		}
		writeJSON(w, out)
	})
}

// streamingAPI wraps PutMedia, GetMedia and GetMediaForFragmentList. With
// hashBody the (small JSON) body is read and signed over; PutMedia's
// streamed body is signed as the clients sign it.
func (s *Server) streamingAPI(op string, hashBody bool, h func(*request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.wg.Add(1)
		defer s.wg.Done()
		start := s.cfg.Now()
		status := http.StatusOK
		defer func() { s.metrics.request(op, status, s.cfg.Now().Sub(start)) }()
		req := &request{r: r, w: w, op: op}
		hash := ""
		if hashBody {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
			if err != nil || len(body) > maxRequestBody {
				status = 400
				writeError(w, errorf(400, "SerializationException", "the request body is unreadable or over %d bytes", maxRequestBody))
				return
			}
			sum := sha256.Sum256(body)
			hash, req.body = hex.EncodeToString(sum[:]), body
		}
		if ae := s.authenticate(r, hash); ae != nil {
			status = ae.Status
			writeError(w, ae)
			return
		}
		if err := h(req); err != nil {
			ae := toAPIError(err)
			status = ae.Status
			if ae.Status >= 500 {
				s.log.Error("request failed", "op", op, "error", err)
			}
			writeError(w, ae)
		}
	})
}

// baseURL is this server's URL as the client reached it. A Host header
// without a port (kvssink sends "Host: 127.0.0.1") is completed with the
// port the connection arrived on.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.AdvertiseURL != "" {
		return strings.TrimSuffix(s.cfg.AdvertiseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if _, port, err := net.SplitHostPort(la.String()); err == nil {
				host = net.JoinHostPort(strings.Trim(host, "[]"), port)
			}
		}
	}
	return fmt.Sprintf("%s://%s", scheme, host)
}
