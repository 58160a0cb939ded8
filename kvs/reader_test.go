package kvs_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"

	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

const (
	key    = "AKIDREADER"
	secret = "reader-secret"
)

var readerCreds = credentials.NewStaticCredentialsProvider(key, secret, "")

func noLeaks(t *testing.T) {
	t.Helper()
	goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// localKVS is kvsgo's own server in-process, the peer the Reader is
// tested against (besides real AWS captures).
type localKVS struct {
	*httptest.Server
	store *store.Store
}

func startKVS(t *testing.T) *localKVS {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(store.Options{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Logger: log, Credentials: map[string]string{key: secret}, GetMediaLinger: 500 * time.Millisecond})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		st.Close()
	})
	return &localKVS{Server: hs, store: st}
}

func controlPlane(endpoint string) *kvs.SDKControlPlane {
	return kvs.NewSDKControlPlane(aws.Config{Region: "us-east-1", Credentials: readerCreds}, endpoint, nil)
}

var track = []media.Track{{Number: 1, Kind: media.KindVideo, CodecID: media.CodecH264, Width: 64, Height: 64,
	CodecPrivate: []byte{1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xce}}}

// base is the wall-clock time of the first test frame.
var base = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// numbered is frame n: 30 fps, a key frame every 30, the payload carries n.
func numbered(n int) media.Frame {
	data := make([]byte, 600+n%7)
	binary.BigEndian.PutUint32(data, uint32(n))
	pts := time.Duration(base.UnixMilli())*time.Millisecond + time.Duration(n)*time.Second/30
	return media.Frame{Track: 1, PTS: pts, DTS: pts, Key: n%30 == 0, Data: data}
}

// produce puts frames [from, to) into the stream with kvsgo's producer.
func produce(t *testing.T, p *kvs.Producer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := p.Put(numbered(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func newProducer(t *testing.T, endpoint, stream string) *kvs.Producer {
	t.Helper()
	p, err := kvs.NewProducer(context.Background(), kvs.ProducerConfig{
		Stream:       kvs.StreamSetup{Name: stream, Create: true, RetentionHours: 1},
		ControlPlane: controlPlane(endpoint), Credentials: readerCreds, Region: "us-east-1"}, track)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// putStream stores n frames in a new stream and waits until all are
// persisted.
func putStream(t *testing.T, endpoint, stream string, n int) {
	t.Helper()
	p := newProducer(t, endpoint, stream)
	produce(t, p, 0, n)
	st, err := p.Close(context.Background())
	if err != nil || st.Persisted != st.Fragments {
		t.Fatalf("producer: %v %+v", err, st)
	}
}

func newReader(t *testing.T, ctx context.Context, endpoint, stream string, start kvs.StartSelector, untilCaughtUp bool) *kvs.Reader {
	t.Helper()
	// A transport of the test's own: no idle connection to a server of an
	// earlier test (whose port a new server may get) is reused.
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	r, err := kvs.NewReader(ctx, kvs.ReaderConfig{Stream: stream, Start: start, Endpoints: controlPlane(endpoint),
		Credentials: readerCreds, Region: "us-east-1", UntilCaughtUp: untilCaughtUp, RetryMin: 20 * time.Millisecond,
		HTTPClient: &http.Client{Transport: transport},
		Logger:     slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// readAll reads frames until the reader ends, checking each frame's
// number, and returns the numbers in order.
func readAll(t *testing.T, r *kvs.Reader) ([]int, []*kvs.FragmentInfo, error) {
	t.Helper()
	var got []int
	var frags []*kvs.FragmentInfo
	for {
		f, err := r.Next()
		if err != nil {
			return got, frags, err
		}
		n := int(binary.BigEndian.Uint32(f.Data))
		want := numbered(n)
		// The producer stamps frames with its own clock from the first one
		// on: offsets are what stays.
		offset := time.Duration(n) * time.Second / 30
		if d := f.PTS - f.Fragment.Timecode - (offset - time.Duration(n/30)*time.Second); d < -time.Millisecond || d > time.Millisecond ||
			f.Key != want.Key || f.Track != 1 || len(f.Data) != len(want.Data) {
			t.Fatalf("frame %d: pts %v in a fragment at %v, key %v track %d len %d; want key %v len %d", n, f.PTS, f.Fragment.Timecode, f.Key, f.Track, len(f.Data), want.Key, len(want.Data))
		}
		// kvsgo's producer sends absolute timecodes: the producer timestamp
		// is the cluster's, so a frame's time is its PTS.
		if !f.Time().Equal(time.Unix(0, int64(f.PTS))) || !f.Fragment.ProducerTimestamp.Equal(time.Unix(0, int64(f.Fragment.Timecode))) {
			t.Fatalf("frame %d: time %v, pts %v, fragment %+v", n, f.Time(), f.PTS, f.Fragment)
		}
		if len(frags) == 0 || frags[len(frags)-1] != f.Fragment {
			frags = append(frags, f.Fragment)
		}
		got = append(got, n)
	}
}

func checkSequence(t *testing.T, got []int, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("read %d frames, want %d (%d..%d): %v", len(got), to-from, from, to-1, got)
	}
	for i, n := range got {
		if n != from+i {
			t.Fatalf("frame %d is number %d, want %d: %v", i, n, from+i, got)
		}
	}
}

// TestReaderReadsEveryFrameOnce: EARLIEST until caught up gives back
// every frame the producer put, in order, with the fragment's tags.
func TestReaderReadsEveryFrameOnce(t *testing.T) {
	defer noLeaks(t)
	srv := startKVS(t)
	putStream(t, srv.URL, "cam", 95)
	r := newReader(t, context.Background(), srv.URL, "cam", kvs.StartSelector{Type: kvs.StartEarliest}, true)
	got, frags, err := readAll(t, r)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("reader ended with %v, want io.EOF at the live edge", err)
	}
	checkSequence(t, got, 0, 95)
	if len(frags) != 4 {
		t.Fatalf("%d fragments, want 4", len(frags))
	}
	for i, f := range frags {
		if f.Number == "" || (i > 0 && f.Number <= frags[i-1].Number) || f.ServerTimestamp.IsZero() ||
			(i > 0 && f.ProducerTimestamp.Sub(frags[i-1].ProducerTimestamp).Round(10*time.Millisecond) != time.Second) || len(f.Tracks) != 1 || f.Tracks[0].Width != 64 ||
			string(f.Tracks[0].CodecPrivate) != string(track[0].CodecPrivate) || f.TimecodeScale != time.Millisecond {
			t.Fatalf("fragment %d: %+v", i, f)
		}
	}
	if r.ContinuationToken() != frags[3].Number {
		t.Fatalf("continuation token %q, want the last fragment's number %q", r.ContinuationToken(), frags[3].Number)
	}
	if st := r.Stats(); st.Frames != 95 || st.Fragments != 4 || st.Duplicates != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A second reader starts where the first left off: nothing new.
	r2 := newReader(t, context.Background(), srv.URL, "cam", kvs.StartSelector{Type: kvs.StartContinuationToken, ContinuationToken: frags[1].Number}, true)
	got, _, err = readAll(t, r2)
	if !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	checkSequence(t, got, 60, 95)
	r.Close()
	r2.Close()
}

// cutProxy forwards to the server and cuts each of the first len(cuts)
// GetMedia responses after that many body bytes.
type cutProxy struct {
	*httptest.Server
	mu    sync.Mutex
	cuts  []int
	count atomic.Int32
}

func newCutProxy(t *testing.T, target string, cuts ...int) *cutProxy {
	t.Helper()
	u, _ := url.Parse(target)
	p := &cutProxy{cuts: cuts}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	// A connection of its own per request: a cut one is never reused, so
	// the only connections that break are the ones the proxy cuts.
	transport := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(transport.CloseIdleConnections)
	rp.Transport = transport
	rp.ErrorLog = nil
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/getMedia" || resp.StatusCode != 200 {
			return nil
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.cuts) > 0 {
			resp.Body = &cutBody{ReadCloser: resp.Body, left: p.cuts[0], p: p}
			p.cuts = p.cuts[1:]
		}
		return nil
	}
	p.Server = httptest.NewUnstartedServer(rp)
	// Without keep-alive: with it, a client now and then saw one more
	// dropped connection than the proxy cut (every frame still came once),
	// which made the count of cuts flaky.
	p.Config.SetKeepAlivesEnabled(false)
	p.Start()
	t.Cleanup(p.Close)
	return p
}

// cutBody fails after left bytes, which makes the proxy abort the
// response mid-stream, as a dropped connection does.
type cutBody struct {
	io.ReadCloser
	left int
	p    *cutProxy
}

var errCut = errors.New("cut by the test proxy")

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.p.count.Add(1)
		return 0, errCut
	}
	n, err := b.ReadCloser.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

// TestReaderResumesAfterCuts: GetMedia connections cut mid-fragment,
// mid-frame and before the first fragment ends still yield every frame
// exactly once.
func TestReaderResumesAfterCuts(t *testing.T) {
	defer noLeaks(t)
	srv := startKVS(t)
	putStream(t, srv.URL, "cut", 150)
	// A fragment here is ~30 frames of ~600 bytes: ~19 KB.
	proxy := newCutProxy(t, srv.URL, 5000, 30000, 700, 12345, 40000)
	r := newReader(t, context.Background(), proxy.URL, "cut", kvs.StartSelector{Type: kvs.StartEarliest}, true)
	got, _, err := readAll(t, r)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("reader ended with %v", err)
	}
	checkSequence(t, got, 0, 150)
	if n := proxy.count.Load(); n != 5 {
		t.Fatalf("the proxy cut %d times, want 5", n)
	}
	if st := r.Stats(); st.Reconnects != 5 || st.Duplicates == 0 {
		t.Fatalf("stats %+v: want 5 reconnects and dropped repeats", st)
	}
	r.Close()
}

// TestReaderFollowsTheLiveEdge: without UntilCaughtUp the reader waits for
// new fragments and reads them as they come; with it, it ends at the edge
// while the producer goes on.
func TestReaderFollowsTheLiveEdge(t *testing.T) {
	defer noLeaks(t)
	srv := startKVS(t)
	p := newProducer(t, srv.URL, "live")
	produce(t, p, 0, 60)
	waitFragments(t, srv.store, "live", 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follower := newReader(t, ctx, srv.URL, "live", kvs.StartSelector{Type: kvs.StartEarliest}, false)
	got := make(chan int, 1000)
	errc := make(chan error, 1)
	go func() {
		for {
			f, err := follower.Next()
			if err != nil {
				errc <- err
				return
			}
			got <- int(binary.BigEndian.Uint32(f.Data))
		}
	}()
	expect := func(from, to int) {
		t.Helper()
		for want := from; want < to; want++ {
			select {
			case n := <-got:
				if n != want {
					t.Fatalf("frame %d, want %d", n, want)
				}
			case err := <-errc:
				t.Fatalf("the follower ended: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatalf("frame %d did not come", want)
			}
		}
	}
	expect(0, 30) // the first fragment is complete once the second starts
	// The producer stops; the follower gets the rest and waits on, past
	// the server ending its idle GetMedia; a new producer goes on.
	if _, err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(30, 60)
	// The producer's stream ended cleanly, so the server ends the
	// follower's GetMedia (GetMediaLinger after the end); the follower asks
	// again, and that request waits at the edge for the next producer.
	asked := follower.Stats().Requests
	deadline := time.Now().Add(20 * time.Second)
	for follower.Stats().Requests < asked+1 {
		if time.Now().After(deadline) {
			t.Fatal("the follower did not ask again after the server ended its GetMedia")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p = newProducer(t, srv.URL, "live")
	produce(t, p, 60, 120)
	expect(60, 90)
	if n := follower.Stats().Requests - asked; n != 1 {
		t.Fatalf("the follower asked %d times since the producer left; want once (GetMedia waits at the edge)", n)
	}

	// A reader until caught up ends while the producer is connected, at
	// the last complete fragment.
	edgeCtx, edgeCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer edgeCancel()
	edge := newReader(t, edgeCtx, srv.URL, "live", kvs.StartSelector{Type: kvs.StartEarliest}, true)
	n, _, err := readAll(t, edge)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("until caught up: %d frames, %v", len(n), err)
	}
	checkSequence(t, n, 0, 90)

	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not stop when its context ended")
	}
	if _, err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	edge.Close()
	follower.Close()
}

func waitFragments(t *testing.T, st *store.Store, name string, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stream store.StreamID
	for stream == "" { // until the producer has created it
		if rec, err := st.Stream(name); err == nil {
			stream = rec.ID
		} else if ctx.Err() != nil {
			t.Fatalf("stream %s was never created: %v", name, err)
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for {
		latest, err := st.Latest(stream)
		if err == nil && latest >= n {
			return
		}
		if err := st.WaitAfter(ctx, stream, latest); err != nil && ctx.Err() != nil {
			t.Fatalf("fewer than %d fragments stored", n)
		}
	}
}

// TestReaderErrors: what cannot work fails at once, in plain words.
func TestReaderErrors(t *testing.T) {
	defer noLeaks(t)
	srv := startKVS(t)
	putStream(t, srv.URL, "cam", 40)
	read := func(stream string, start kvs.StartSelector, creds aws.CredentialsProvider) error {
		r, err := kvs.NewReader(context.Background(), kvs.ReaderConfig{Stream: stream, Start: start, Endpoints: controlPlane(srv.URL),
			Credentials: creds, Region: "us-east-1", UntilCaughtUp: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = r.Next()
		return err
	}
	err := read("nope", kvs.StartSelector{Type: kvs.StartEarliest}, readerCreds)
	if !errors.Is(err, kvs.ErrNoStream) || !strings.Contains(err.Error(), "ResourceNotFoundException") || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown stream: %v", err)
	}
	err = read("cam", kvs.StartSelector{Type: kvs.StartFragmentNumber, FragmentNumber: "91343852333000000000000000000000000000000000999"}, readerCreds)
	if !errors.Is(err, kvs.ErrNoFragment) || !strings.Contains(err.Error(), "999") {
		t.Fatalf("unknown fragment: %v", err)
	}
	err = read("cam", kvs.StartSelector{Type: kvs.StartEarliest}, credentials.NewStaticCredentialsProvider(key, "wrong", ""))
	if !errors.Is(err, kvs.ErrAuth) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := kvs.NewReader(context.Background(), kvs.ReaderConfig{Stream: "cam", Start: kvs.StartSelector{Type: "SOON"},
		Endpoints: controlPlane(srv.URL), Credentials: readerCreds}); err == nil {
		t.Fatal("an unknown start selector was accepted")
	}
}

// staticEndpoint serves GetMedia from a fixed handler.
type staticEndpoint string

func (s staticEndpoint) DataEndpoint(context.Context, string, string) (string, error) {
	return string(s), nil
}

func capture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../shared/reference/kvs-captures/" + name)
	if err != nil {
		t.Fatalf("reference capture: %v", err)
	}
	return b
}

// TestReaderReadsRealGetMediaOutput: GetMedia output recorded from the AWS
// service decodes with its fragment numbers, timestamps and tags.
func TestReaderReadsRealGetMediaOutput(t *testing.T) {
	defer noLeaks(t)
	body := capture(t, "output_get_media.mkv")
	var requests atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			w.Header().Set("Content-Type", "video/webm")
			_, _ = w.Write(body)
		} // then: at the live edge, nothing more
	}))
	defer hs.Close()
	r, err := kvs.NewReader(context.Background(), kvs.ReaderConfig{Stream: "aws", Start: kvs.StartSelector{Type: kvs.StartEarliest},
		Endpoints: staticEndpoint(hs.URL), Credentials: readerCreds, Region: "us-east-1", UntilCaughtUp: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	frames := 0
	var frags []*kvs.FragmentInfo
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(frags) == 0 || frags[len(frags)-1] != f.Fragment {
			frags = append(frags, f.Fragment)
			if !f.Key {
				t.Fatalf("fragment %d starts with a non-key frame", len(frags))
			}
		}
		frames++
	}
	if frames != 300 || len(frags) != 5 {
		t.Fatalf("%d frames in %d fragments, want 300 in 5", frames, len(frags))
	}
	first := frags[0]
	if first.Number != "91343852333181432392682062607743920146159169392" || first.ServerTimestamp.UnixMilli() != 1511852109126 ||
		first.ProducerTimestamp.UnixMilli() != 1511852108513 || first.Tracks[0].CodecID != media.CodecH264 || first.Tracks[0].Width != 640 {
		t.Fatalf("first fragment %+v", first)
	}
	if frags[4].Timecode != 8*time.Second || len(first.Metadata) == 0 {
		t.Fatalf("last fragment timecode %v, metadata %v", frags[4].Timecode, first.Metadata)
	}
	if behind, ok := r.MillisBehindNow(); !ok || behind != 12093*time.Millisecond {
		t.Fatalf("millis behind now %v %v", behind, ok)
	}
	if r.ContinuationToken() != "91343852333181432412489103236310005892133364608" {
		t.Fatalf("token %q", r.ContinuationToken())
	}
	if requests.Load() != 2 {
		t.Fatalf("%d requests: want one more after the response ended, to know it is the edge", requests.Load())
	}
}

// TestReaderReportsInBandErrors: an error the service puts in the stream
// (AWS_KINESISVIDEO_ERROR_ID) ends the reader with its id and meaning.
func TestReaderReportsInBandErrors(t *testing.T) {
	defer noLeaks(t)
	body := mkv.AppendTags(nil, mkv.SimpleTag{Name: mkv.TagErrorCode, Value: "FRAGMENT_NOT_FOUND"}, mkv.SimpleTag{Name: mkv.TagErrorID, Value: "4000"})
	body = append(append(append([]byte(nil), capture(t, "output_get_media.mkv")[:0]...), fakeHeader(t)...), body...)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	defer hs.Close()
	r, err := kvs.NewReader(context.Background(), kvs.ReaderConfig{Stream: "aws", Start: kvs.StartSelector{Type: kvs.StartEarliest},
		Endpoints: staticEndpoint(hs.URL), Credentials: readerCreds, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Next()
	var ge *kvs.GetMediaError
	if !errors.As(err, &ge) || ge.ID != 4000 || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("got %v, want GetMedia error 4000", err)
	}
}

func fakeHeader(t *testing.T) []byte {
	t.Helper()
	h, err := mkv.AppendHeader(nil, &mkv.Header{Tracks: []mkv.Track{{Number: 1, Type: mkv.TrackTypeVideo, CodecID: media.CodecH264, Width: 64, Height: 64}}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestParseStart(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want kvs.StartSelector
	}{
		{"now", kvs.StartSelector{Type: kvs.StartNow}},
		{"EARLIEST", kvs.StartSelector{Type: kvs.StartEarliest}},
		{"91343852333181432392682062607743920146159169392", kvs.StartSelector{Type: kvs.StartFragmentNumber, FragmentNumber: "91343852333181432392682062607743920146159169392"}},
		{"token:abc", kvs.StartSelector{Type: kvs.StartContinuationToken, ContinuationToken: "abc"}},
		{"2026-05-01T11:00:00Z", kvs.StartSelector{Type: kvs.StartProducerTimestamp, Timestamp: now.Add(-time.Hour)}},
		{"1777633200.5", kvs.StartSelector{Type: kvs.StartProducerTimestamp, Timestamp: now.Add(-time.Hour + 500*time.Millisecond)}},
		{"-5m", kvs.StartSelector{Type: kvs.StartProducerTimestamp, Timestamp: now.Add(-5 * time.Minute)}},
	}
	for _, c := range cases {
		got, err := kvs.ParseStart(c.in, now)
		if err != nil || got.Type != c.want.Type || got.FragmentNumber != c.want.FragmentNumber ||
			got.ContinuationToken != c.want.ContinuationToken || !got.Timestamp.Equal(c.want.Timestamp) {
			t.Errorf("ParseStart(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-x", "-0s", "12:00"} {
		if _, err := kvs.ParseStart(bad, now); err == nil || !strings.Contains(err.Error(), "--start") {
			t.Errorf("ParseStart(%q): %v, want an error naming --start", bad, err)
		}
	}
}

// FuzzReaderResponse: whatever a GetMedia response holds, the reader
// returns frames or an error, never panics or hangs.
func FuzzReaderResponse(f *testing.F) {
	f.Add(capture(f, "output_get_media.mkv")[:20000])
	f.Add(capture(f, "test_mixed_tags.mkv")[:4000])
	f.Add(mkv.AppendTags(nil, mkv.SimpleTag{Name: mkv.TagErrorID, Value: "4000"}))
	f.Fuzz(func(t *testing.T, body []byte) {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
		defer hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := kvs.NewReader(ctx, kvs.ReaderConfig{Stream: "f", Start: kvs.StartSelector{Type: kvs.StartEarliest},
			Endpoints: staticEndpoint(hs.URL), Credentials: readerCreds, Region: "us-east-1", UntilCaughtUp: true,
			RetryMin: time.Millisecond, RetryMax: time.Millisecond, GiveUpAfter: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for range 100000 {
			fr, err := r.Next()
			if err != nil {
				if ctx.Err() != nil {
					t.Fatalf("the reader did not end by itself: %v", err)
				}
				return
			}
			_ = fr.Time()
		}
	})
}
