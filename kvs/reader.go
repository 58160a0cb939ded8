package kvs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// DataEndpoints finds the endpoint of a data-plane API for a stream:
// GetDataEndpoint. SDKControlPlane implements it.
type DataEndpoints interface {
	DataEndpoint(ctx context.Context, stream, apiName string) (string, error)
}

// ReaderConfig configures a Reader. Zero values take the defaults in
// brackets.
type ReaderConfig struct {
	Stream string
	Start  StartSelector
	// Endpoints finds the GetMedia endpoint.
	Endpoints   DataEndpoints
	Credentials aws.CredentialsProvider
	Region      string
	HTTPClient  *http.Client // [a client without timeouts: GetMedia is long-lived]
	Logger      *slog.Logger
	Now         func() time.Time
	// UntilCaughtUp ends the Reader (io.EOF) once it has read what the
	// stream holds and reached the live edge; otherwise it follows the live
	// edge until its context ends.
	UntilCaughtUp bool
	RetryMin      time.Duration // first reconnect delay [250 ms]
	RetryMax      time.Duration // longest reconnect delay [5 s]
	GiveUpAfter   time.Duration // fail after this long without a working connection [2 min]
}

func (c *ReaderConfig) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.RetryMin == 0 {
		c.RetryMin = 250 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.GiveUpAfter == 0 {
		c.GiveUpAfter = 2 * time.Minute
	}
}

// Frame is one frame a Reader read, with the fragment it came in.
type Frame struct {
	// Track, PTS, Key and Data as the producer sent them. PTS is the
	// Matroska timestamp (for kvsgo and kvssink producers, time since the
	// Unix epoch); Matroska carries no DTS, so DTS equals PTS. Data is in
	// length-prefixed (AVCC/HVCC) form for video and is valid until the
	// next call to Next.
	media.Frame
	// Fragment is shared by every frame of one fragment.
	Fragment *FragmentInfo
}

// Time is the frame's wall-clock time: the fragment's producer timestamp
// plus the frame's offset into the fragment.
func (f *Frame) Time() time.Time {
	return f.Fragment.ProducerTimestamp.Add(f.PTS - f.Fragment.Timecode)
}

// FragmentInfo is what GetMedia tells about one fragment, before its
// frames.
type FragmentInfo struct {
	// Number is the fragment number (AWS_KINESISVIDEO_FRAGMENT_NUMBER).
	Number string
	// ProducerTimestamp and ServerTimestamp as the service tags them.
	ProducerTimestamp, ServerTimestamp time.Time
	// Timecode is the fragment's Cluster timestamp, in the frames' PTS
	// terms; TimecodeScale is the stream's timestamp unit.
	Timecode      time.Duration
	TimecodeScale time.Duration
	// Tracks of the stream header in force. The slice is shared by
	// fragments with the same header.
	Tracks []media.Track
	// Metadata is the producer's fragment metadata (its own tags).
	Metadata []mkv.SimpleTag
}

// Track returns the fragment's track with the given number, or nil.
func (f *FragmentInfo) Track(n uint8) *media.Track {
	for i := range f.Tracks {
		if f.Tracks[i].Number == n {
			return &f.Tracks[i]
		}
	}
	return nil
}

// GetMediaError is an error the service reported in the media stream
// (AWS_KINESISVIDEO_ERROR_ID and _ERROR_CODE).
type GetMediaError struct {
	ID   int
	Code string
}

func (e *GetMediaError) Error() string {
	what := map[int]string{
		3002: "the service could not write the stream",
		4000: "the requested fragment was not found (it may have expired)",
		4500: "access to the stream's KMS key was denied",
		4501: "the stream's KMS key is disabled",
		4502: "the stream's KMS key failed validation",
		4503: "the stream's KMS key is unavailable",
		4504: "the stream's KMS key is not for this use",
		4505: "the stream's KMS key is in an invalid state",
		4506: "the stream's KMS key was not found",
		5000: "the service had an internal error",
	}[e.ID]
	if what == "" {
		what = "the service reported an error"
	}
	return fmt.Sprintf("GetMedia error %d %s: %s", e.ID, e.Code, what)
}

// retriable reports whether reading on from the last fragment can help.
func (e *GetMediaError) retriable() bool { return e.ID == 3002 || e.ID >= 5000 }

// ReaderStats counts what a Reader did.
type ReaderStats struct {
	Frames, Fragments int64
	// Duplicates counts frames the service sent again after a reconnect
	// and the Reader dropped.
	Duplicates int64
	Reconnects int64
	// Requests counts GetMedia responses opened.
	Requests int64
}

// Reader reads a stream with GetMedia: frames in order, each exactly once,
// across dropped connections (it resumes with the continuation token).
// Use it from one goroutine; Close ends it.
type Reader struct {
	cfg    ReaderConfig
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	endpoint string
	resp     *http.Response
	dmx      *mkv.Demuxer

	// What the current response is saying.
	header        mkv.Header
	scale         time.Duration
	tracks        []media.Track
	pendingNumber string
	pendingServer time.Time
	pendingProd   time.Time
	pendingMeta   []mkv.SimpleTag
	inCluster     bool
	frag          *FragmentInfo
	skipFrag      bool
	fragFrames    int // frames of frag seen in this response
	block         mkv.Block
	blockTC       int64
	blockKey      bool
	blockNext     int
	respFragments int // fragments completed in this response

	// Where the reader is, to resume without duplicates or gaps.
	token        string        // continuation token after the last whole fragment
	reqSel       StartSelector // where the open response was asked to start
	doneNumber   string        // the last fragment whose frames all went out
	partNumber   string        // a fragment whose frames went out in part
	partFrames   int
	partServer   time.Time
	lastDuration time.Duration
	fragSpan     time.Duration
	behind       time.Duration
	haveBehind   bool

	// Caught-up detection (UntilCaughtUp).
	quiet    *time.Timer
	caughtUp atomic.Bool

	failures  int
	failSince time.Time
	delay     time.Duration
	emptyEnds int

	closed atomic.Bool

	mu        sync.Mutex // guards stats, cancelReq and quietGen (the caught-up timer uses them)
	stats     ReaderStats
	cancelReq context.CancelFunc
	quietGen  uint64
	out       Frame
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("kvs: reader closed")

// NewReader returns a Reader; it connects with the first Next. ctx bounds
// the Reader's whole life.
func NewReader(ctx context.Context, cfg ReaderConfig) (*Reader, error) {
	cfg.defaults()
	if cfg.Stream == "" || cfg.Endpoints == nil || cfg.Credentials == nil {
		return nil, errors.New("kvs: ReaderConfig needs a Stream, Endpoints and Credentials")
	}
	if cfg.Start.Type == "" {
		cfg.Start.Type = StartNow
	}
	if _, err := cfg.Start.requestJSON(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Reader{cfg: cfg, log: cfg.Logger.With("stream", cfg.Stream), ctx: ctx, cancel: cancel, delay: cfg.RetryMin}
	return r, nil
}

// Close ends the Reader and its connection; Next then returns ErrClosed.
// It is safe to call from any goroutine.
func (r *Reader) Close() error {
	r.closed.Store(true)
	r.cancel()
	return nil
}

// Stats returns counts so far; safe from any goroutine.
func (r *Reader) Stats() ReaderStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// ContinuationToken returns the token after the last whole fragment read,
// for a later Reader to start with StartContinuationToken; empty before
// the first.
func (r *Reader) ContinuationToken() string { return r.token }

// MillisBehindNow is how far the last fragment read was behind the live
// edge when the service sent it (AWS_KINESISVIDEO_MILLIS_BEHIND_NOW).
func (r *Reader) MillisBehindNow() (time.Duration, bool) { return r.behind, r.haveBehind }

// Next returns the next frame. It returns io.EOF when UntilCaughtUp is set
// and the live edge is reached, the context's error when it ends, and
// other errors for what reconnecting cannot fix (an unknown stream or
// fragment, refused credentials, no connection for GiveUpAfter).
func (r *Reader) Next() (*Frame, error) {
	for {
		if r.ctx.Err() != nil {
			r.dropResponse()
			if r.closed.Load() {
				return nil, ErrClosed
			}
			return nil, r.ctx.Err()
		}
		if f, ok := r.nextInBlock(); ok {
			return f, nil
		}
		if r.dmx == nil {
			if r.cfg.UntilCaughtUp && r.caughtUp.Load() {
				return nil, io.EOF
			}
			if err := r.connect(); err != nil {
				return nil, err
			}
			continue
		}
		ev, err := r.dmx.Next()
		if err != nil {
			if err := r.responseEnded(err); err != nil {
				return nil, err
			}
			continue
		}
		if err := r.handle(ev); err != nil {
			return nil, err
		}
	}
}

// nextInBlock hands out the frames of the current block, dropping those
// already delivered before a reconnect.
func (r *Reader) nextInBlock() (*Frame, bool) {
	for r.blockNext < len(r.block.Frames) {
		data := r.block.Frames[r.blockNext]
		r.blockNext++
		idx := r.fragFrames
		r.fragFrames++
		if r.skipFrag || (r.frag.Number != "" && r.frag.Number == r.partNumber && idx < r.partFrames) {
			r.mu.Lock()
			r.stats.Duplicates++
			r.mu.Unlock()
			continue
		}
		if r.frag.Number != "" {
			r.partNumber, r.partFrames, r.partServer = r.frag.Number, r.fragFrames, r.frag.ServerTimestamp
		}
		pts := time.Duration(r.blockTC) * r.scale
		r.out = Frame{Frame: media.Frame{Track: uint8(r.block.Track), PTS: pts, DTS: pts, Key: r.blockKey, Data: data}, Fragment: r.frag}
		r.mu.Lock()
		r.stats.Frames++
		r.mu.Unlock()
		return &r.out, true
	}
	return nil, false
}

// handle takes one demuxer event of the response.
func (r *Reader) handle(ev *mkv.Event) error {
	switch ev.Type {
	case mkv.EventEBML:
		// A new chunk: a fragment, or the end of the stream if the caught-up
		// timer fired meanwhile.
		r.stopQuiet()
		if r.cfg.UntilCaughtUp && r.caughtUp.Load() {
			r.dropResponse()
			return io.EOF
		}
		r.pendingNumber, r.pendingMeta = "", nil
		r.pendingServer, r.pendingProd = time.Time{}, time.Time{}
	case mkv.EventHeader:
		r.setHeader(ev.Header)
	case mkv.EventTags:
		return r.tags(ev.Tags)
	case mkv.EventCluster:
		r.stopQuiet()
		r.startFragment(ev.Timecode)
	case mkv.EventBlock:
		if r.frag == nil || !r.inCluster {
			return nil
		}
		// The block's frames stay valid until the demuxer's next event,
		// which is asked for only once they are all handed out. Laced
		// frames share the block's timestamp.
		r.block = ev.Block
		r.blockTC, r.blockKey, r.blockNext = ev.Timecode, ev.Key, 0
		if span := time.Duration(ev.Timecode)*r.scale - r.frag.Timecode; span > r.fragSpan {
			r.fragSpan = span
		}
	case mkv.EventClusterEnd:
		r.endFragment()
	}
	return nil
}

func (r *Reader) setHeader(h *mkv.Header) {
	r.header = *h
	scale := h.TimecodeScale
	if scale == 0 {
		scale = mkv.DefaultTimecodeScale
	}
	r.scale = time.Duration(scale)
	tracks := make([]media.Track, 0, len(h.Tracks))
	for _, t := range h.Tracks {
		mt := media.Track{Number: uint8(t.Number), CodecID: t.CodecID, CodecPrivate: t.CodecPrivate, Name: t.Name}
		switch t.Type {
		case mkv.TrackTypeVideo:
			mt.Kind, mt.Width, mt.Height = media.KindVideo, int(t.Width), int(t.Height)
		case mkv.TrackTypeAudio:
			mt.Kind, mt.SampleRate, mt.Channels = media.KindAudio, t.SamplingFrequency, int(t.Channels)
		default:
			continue
		}
		tracks = append(tracks, mt)
	}
	if !sameTracks(tracks, r.tracks) {
		r.tracks = tracks
	}
}

func sameTracks(a, b []media.Track) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Number != y.Number || x.Kind != y.Kind || x.CodecID != y.CodecID || !bytes.Equal(x.CodecPrivate, y.CodecPrivate) ||
			x.Width != y.Width || x.Height != y.Height || x.SampleRate != y.SampleRate || x.Channels != y.Channels || x.Name != y.Name {
			return false
		}
	}
	return true
}

func (r *Reader) tags(tags []mkv.SimpleTag) error {
	var errID int
	var errCode string
	var producer []mkv.SimpleTag
	for _, t := range tags {
		switch t.Name {
		case mkv.TagFragmentNumber:
			r.pendingNumber = t.Value
		case mkv.TagServerTimestamp:
			r.pendingServer, _ = parseSeconds(t.Value)
		case mkv.TagProducerTS:
			r.pendingProd, _ = parseSeconds(t.Value)
		case mkv.TagContinuation:
			if !r.skipFrag { // a repeat's token would move the position back
				r.token = t.Value
			}
		case mkv.TagMillisBehindNow:
			if ms, err := strconv.ParseInt(t.Value, 10, 64); err == nil {
				r.behind, r.haveBehind = time.Duration(ms)*time.Millisecond, true
				r.armQuiet()
			}
		case mkv.TagErrorID:
			errID, _ = strconv.Atoi(t.Value)
		case mkv.TagErrorCode:
			errCode = t.Value
		default:
			if !strings.HasPrefix(t.Name, "AWS_KINESISVIDEO_") {
				producer = append(producer, t)
			}
		}
	}
	if len(producer) > 0 && !r.inCluster {
		r.pendingMeta = append(r.pendingMeta, producer...)
	}
	if errID != 0 || errCode != "" {
		ge := &GetMediaError{ID: errID, Code: errCode}
		if ge.retriable() {
			r.log.Warn("the service reported an error in the media stream; reading on from the last fragment", "error", ge)
			r.dropResponse()
			r.backoff()
			return nil
		}
		r.dropResponse()
		// The service tells of a fragment it does not have in the stream
		// itself (FRAGMENT_NOT_FOUND), not with an HTTP error.
		if ge.ID == 4000 {
			switch sel := r.reqSel; sel.Type {
			case StartFragmentNumber:
				return fmt.Errorf("%w in stream %q: fragment %s: %w", ErrNoFragment, r.cfg.Stream, sel.FragmentNumber, ge)
			case StartContinuationToken:
				return fmt.Errorf("%w in stream %q: continuation token %s: %w", ErrNoFragment, r.cfg.Stream, sel.ContinuationToken, ge)
			}
		}
		return ge
	}
	return nil
}

func (r *Reader) startFragment(tc int64) {
	scale := r.scale
	if scale == 0 {
		scale = time.Duration(mkv.DefaultTimecodeScale)
	}
	r.frag = &FragmentInfo{Number: r.pendingNumber, ProducerTimestamp: r.pendingProd, ServerTimestamp: r.pendingServer,
		Timecode: time.Duration(tc) * scale, TimecodeScale: scale, Tracks: r.tracks, Metadata: r.pendingMeta}
	r.inCluster, r.fragFrames, r.block = true, 0, mkv.Block{}
	// A fragment at or before the last one delivered whole came again:
	// the service resent it after a reconnect.
	r.skipFrag = r.frag.Number != "" && r.doneNumber != "" && compareFragmentNumbers(r.frag.Number, r.doneNumber) <= 0
	if !r.skipFrag && r.partNumber != "" && r.frag.Number != r.partNumber {
		if r.frag.Number != "" && compareFragmentNumbers(r.frag.Number, r.partNumber) > 0 {
			r.log.Warn("the rest of a fragment read in part before a reconnect is gone from the stream (expired?)",
				"fragment", r.partNumber, "frames_read", r.partFrames)
		}
		r.partNumber, r.partFrames = "", 0
	}
	r.fragSpan = 0
}

func (r *Reader) endFragment() {
	if !r.inCluster {
		return
	}
	r.inCluster = false
	r.block = mkv.Block{}
	if r.skipFrag {
		return
	}
	if r.frag.Number != "" {
		r.doneNumber = r.frag.Number
	}
	if r.frag.Number == r.partNumber {
		r.partNumber, r.partFrames = "", 0
	}
	r.respFragments++
	r.lastDuration = r.fragSpan + 33*time.Millisecond
	r.failures, r.failSince, r.delay = 0, time.Time{}, r.cfg.RetryMin
	r.mu.Lock()
	r.stats.Fragments++
	r.mu.Unlock()
	r.armQuiet()
}

// ErrNoFragment marks a fragment number or continuation token the stream
// does not have (any more).
var ErrNoFragment = errors.New("no such fragment")

// permanentError is a failure that reconnecting cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// connect opens a GetMedia response where the reader left off, retrying
// what can be retried.
func (r *Reader) connect() error {
	for {
		if r.ctx.Err() != nil {
			return nil // Next reports it
		}
		err := r.open()
		if err == nil {
			return nil
		}
		if r.ctx.Err() != nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		if gerr := r.failed(err); gerr != nil {
			return gerr
		}
		r.log.Warn("GetMedia failed; retrying", "error", err, "in", r.delay)
		r.backoff()
	}
}

// failed counts a failure; past GiveUpAfter without progress it returns
// the error to give up with.
func (r *Reader) failed(err error) error {
	now := r.cfg.Now()
	r.failures++
	if r.failSince.IsZero() {
		r.failSince = now
	}
	if r.failures > 1 && now.Sub(r.failSince) >= r.cfg.GiveUpAfter {
		return fmt.Errorf("reading stream %s: no working connection for %s, giving up: %w", r.cfg.Stream, r.cfg.GiveUpAfter, err)
	}
	return nil
}

// resumeSelector is where the next request starts: after the last whole
// fragment, else at the fragment read in part, else where asked.
func (r *Reader) resumeSelector() StartSelector {
	switch {
	case r.token != "":
		return StartSelector{Type: StartContinuationToken, ContinuationToken: r.token}
	case r.doneNumber != "":
		// Fragments up to doneNumber are dropped as repeats, whether the
		// service starts at or after it.
		return StartSelector{Type: StartFragmentNumber, FragmentNumber: r.doneNumber}
	case r.partNumber != "" && !r.partServer.IsZero():
		return StartSelector{Type: StartServerTimestamp, Timestamp: r.partServer}
	}
	return r.cfg.Start
}

func (r *Reader) open() error {
	if r.endpoint == "" {
		ep, err := r.cfg.Endpoints.DataEndpoint(r.ctx, r.cfg.Stream, "GET_MEDIA")
		if err != nil {
			if errors.Is(err, ErrNoStream) || errors.Is(err, ErrAuth) {
				return &permanentError{err}
			}
			return err
		}
		r.endpoint = strings.TrimSuffix(ep, "/")
	}
	sel := r.resumeSelector()
	selJSON, err := sel.requestJSON()
	if err != nil {
		return &permanentError{err}
	}
	body, err := json.Marshal(map[string]any{"StreamName": r.cfg.Stream, "StartSelector": selJSON})
	if err != nil {
		return &permanentError{err}
	}
	ctx, cancel := context.WithCancel(r.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint+"/getMedia", bytes.NewReader(body))
	if err != nil {
		cancel()
		return &permanentError{fmt.Errorf("GetMedia endpoint %q: %w", r.endpoint, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kvsgo")
	creds, err := r.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		cancel()
		return &permanentError{fmt.Errorf("%w: no AWS credentials: %v", ErrAuth, err)}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", r.cfg.Region, r.cfg.Now()); err != nil {
		cancel()
		return &permanentError{fmt.Errorf("signing GetMedia: %w", err)}
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		cancel()
		r.endpoint = "" // ask for the endpoint again: it may have moved
		return fmt.Errorf("connecting to %s: %w", req.URL.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		return refusal(resp, sel, r.cfg.Stream)
	}
	r.log.Debug("GetMedia started", "selector", sel.Type)
	r.resp, r.dmx, r.reqSel = resp, mkv.NewDemuxer(resp.Body), sel
	r.mu.Lock()
	r.cancelReq = cancel
	r.stats.Requests++
	r.mu.Unlock()
	r.inCluster, r.block, r.blockNext, r.respFragments = false, mkv.Block{}, 0, 0
	if r.cfg.UntilCaughtUp {
		// Nothing at all within this long: nothing is coming.
		r.setQuiet(3 * time.Second)
	}
	return nil
}

// refusal turns a GetMedia error response into an error in plain words.
func refusal(resp *http.Response, sel StartSelector, stream string) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var msg struct {
		Message  string `json:"message"`
		Message2 string `json:"Message"`
		Type     string `json:"__type"`
	}
	_ = json.Unmarshal(raw, &msg)
	text := msg.Message
	if text == "" {
		text = msg.Message2
	}
	typ := resp.Header.Get("X-Amzn-ErrorType")
	if typ == "" {
		typ = resp.Header.Get("x-amz-ErrorType")
	}
	if typ == "" {
		typ = msg.Type
	}
	typ, _, _ = strings.Cut(typ, ":")
	desc := fmt.Sprintf("GetMedia: HTTP %d %s: %s", resp.StatusCode, typ, text)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return &permanentError{fmt.Errorf("%s: %w (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile, and the clock)", desc, ErrAuth)}
	case typ == "ResourceNotFoundException" && (sel.Type == StartFragmentNumber || sel.Type == StartContinuationToken):
		return &permanentError{fmt.Errorf("%w in stream %q: %s", ErrNoFragment, stream, desc)}
	case typ == "ResourceNotFoundException":
		return &permanentError{fmt.Errorf("%w: %q: %s", ErrNoStream, stream, desc)}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500,
		typ == "ClientLimitExceededException", typ == "ConnectionLimitExceededException":
		return errors.New(desc)
	}
	return &permanentError{errors.New(desc)}
}

// responseEnded handles the end of a response: at the live edge, or cut.
func (r *Reader) responseEnded(err error) error {
	caught := r.caughtUp.Load()
	clean := errors.Is(err, io.EOF) && !r.inCluster
	r.dropResponse()
	switch {
	case r.ctx.Err() != nil:
		return nil // Next reports it
	case r.cfg.UntilCaughtUp && caught:
		return io.EOF
	case clean:
		// The service ended the response between fragments: it does so at
		// the live edge when no producer is connected.
		r.failures, r.failSince = 0, time.Time{}
		if r.respFragments > 0 {
			r.emptyEnds = 0
			return nil
		}
		if r.cfg.UntilCaughtUp {
			r.caughtUp.Store(true)
			return io.EOF
		}
		r.emptyEnds++
		r.sleep(min(time.Duration(r.emptyEnds)*time.Second, r.cfg.RetryMax))
		return nil
	}
	var ge *GetMediaError
	if errors.As(err, &ge) {
		return err
	}
	if gerr := r.failed(err); gerr != nil {
		return gerr
	}
	r.mu.Lock()
	r.stats.Reconnects++
	r.mu.Unlock()
	r.log.Warn("GetMedia connection lost; resuming where it stopped", "error", err, "fragment", r.doneNumber, "in", r.delay)
	r.backoff()
	return nil
}

// dropResponse ends the current response, if any.
func (r *Reader) dropResponse() {
	r.stopQuiet()
	r.mu.Lock()
	cancel := r.cancelReq
	r.cancelReq = nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if r.resp != nil {
		r.resp.Body.Close()
		r.resp = nil
	}
	r.dmx = nil
	r.inCluster, r.block, r.blockNext = false, mkv.Block{}, 0
}

func (r *Reader) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.ctx.Done():
	}
}

func (r *Reader) backoff() {
	r.sleep(r.delay)
	r.delay = min(2*r.delay, r.cfg.RetryMax)
}

// armQuiet starts the caught-up timer after a fragment: if no next
// fragment begins within half a fragment's duration, and the fragment was
// near the live edge when sent, the reader has caught up. Fragments of a
// backlog follow one another at once.
func (r *Reader) armQuiet() {
	if !r.cfg.UntilCaughtUp || r.dmx == nil {
		return
	}
	d := max(r.lastDuration, 100*time.Millisecond)
	if r.haveBehind && r.behind > 2*d+2*time.Second {
		r.stopQuiet() // far behind: more is surely coming
		return
	}
	r.setQuiet(min(max(d/2, 300*time.Millisecond), 2*time.Second))
}

func (r *Reader) setQuiet(d time.Duration) {
	r.stopQuiet()
	r.mu.Lock()
	gen := r.quietGen
	r.mu.Unlock()
	r.quiet = time.AfterFunc(d, func() { r.quietFired(gen) })
}

// stopQuiet stops the caught-up timer. One that has fired already but not
// yet run finds its generation outdated and does nothing.
func (r *Reader) stopQuiet() {
	if r.quiet == nil {
		return
	}
	r.quiet.Stop()
	r.quiet = nil
	r.mu.Lock()
	r.quietGen++
	r.mu.Unlock()
}

// quietFired runs on the timer's goroutine: it marks the reader caught up
// and ends the response the reader is waiting on.
func (r *Reader) quietFired(gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.quietGen {
		return
	}
	r.caughtUp.Store(true)
	if r.cancelReq != nil {
		r.cancelReq()
	}
}
