package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvsgo/kvsgo/internal/source"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
)

type putFlags struct {
	stream, src, endpoint, region             string
	accessKey, secretKey, sessionToken        string
	retention                                 int
	noCreate, fast, quiet                     bool
	fps                                       float64
	bufferDuration, ackTimeout, giveUp, close time.Duration
	storageMB                                 int
	metricsAddr, logLevel                     string
	fragmentDuration                          int
	camera                                    source.Camera
	rtspTransport                             string
	lowLatency                                bool
}

// alias registers another name for a flag, for people coming from kvssink.
func alias(fs *flag.FlagSet, name, to string) {
	f := fs.Lookup(to)
	fs.Var(f.Value, name, "alias of --"+to+" (kvssink's name)")
}

func runPut(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "put", "put --stream NAME --source SRC [--endpoint URL] [--region R]")
	var f putFlags
	fs.StringVar(&f.stream, "stream", "", "Kinesis video stream to send to (required)")
	fs.StringVar(&f.src, "source", "", "what to send: rpicam, v4l2:/dev/videoN, rtsp://camera/stream, gst:'PIPELINE', exec:'COMMAND', a file (H.264/H.265 Annex-B, Matroska, MPEG-TS, MP4), - for stdin, or testsrc (required)")
	fs.StringVar(&f.endpoint, "endpoint", "", "control-plane URL, e.g. http://127.0.0.1:4567 for kvsgo serve (default: AWS, or AWS_ENDPOINT_URL_KINESIS_VIDEO)")
	fs.StringVar(&f.region, "region", "", "AWS region (default: the AWS configuration, AWS_REGION)")
	fs.StringVar(&f.accessKey, "access-key", "", "AWS access key ID (default: the standard AWS credential chain)")
	fs.StringVar(&f.secretKey, "secret-key", "", "AWS secret access key")
	fs.StringVar(&f.sessionToken, "session-token", "", "AWS session token")
	fs.IntVar(&f.retention, "retention", 24, "hours of data a created stream keeps (0: none, and no PERSISTED acks)")
	fs.BoolVar(&f.noCreate, "no-create", false, "fail if the stream does not exist instead of creating it")
	fs.Float64Var(&f.fps, "fps", 0, "frame rate of a raw H.264/H.265 source (default: from the stream, else arrival time)")
	fs.BoolVar(&f.fast, "fast", false, "send a file as fast as the service takes it, not in real time")
	fs.DurationVar(&f.bufferDuration, "buffer", 120*time.Second, "video kept until the service has persisted it; past it the oldest fragments are dropped")
	fs.IntVar(&f.storageMB, "storage-size", 128, "MB kept until the service has persisted it")
	fs.DurationVar(&f.ackTimeout, "ack-timeout", 10*time.Second, "reconnect when sent data gets no acknowledgement for this long")
	fs.DurationVar(&f.giveUp, "give-up-after", 2*time.Minute, "exit with an error after this long without a working connection (0: never)")
	fs.DurationVar(&f.close, "close-timeout", 30*time.Second, "at the end, how long to wait for the last fragments to be persisted")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on this address, e.g. 127.0.0.1:9090")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.quiet, "quiet", false, "no live status line")
	fs.IntVar(&f.camera.Width, "width", 0, "rpicam/v4l2: picture width (default 1280)")
	fs.IntVar(&f.camera.Height, "height", 0, "rpicam/v4l2: picture height (default 720)")
	fs.IntVar(&f.camera.Bitrate, "bitrate", 0, "rpicam/v4l2: bits per second (default 2000000)")
	fs.IntVar(&f.camera.KeyInt, "keyint", 0, "rpicam/v4l2: frames between key frames (default: one second's worth)")
	fs.StringVar(&f.camera.Profile, "profile", "", "rpicam: H.264 profile, baseline, main or high (default baseline)")
	fs.BoolVar(&f.lowLatency, "low-latency", false, "rpicam: pass --low-latency (automatic on a Raspberry Pi 5)")
	fs.StringVar(&f.rtspTransport, "rtsp-transport", "tcp", "rtsp://: tcp or udp")
	fs.IntVar(&f.fragmentDuration, "fragment-duration", 0, "fragment length in ms of a stream without video (default 2000); with video, fragments follow the key frames (kvssink's name)")
	// kvssink's property names, in its units (seconds), for people moving over.
	alias(fs, "stream-name", "stream")
	alias(fs, "aws-region", "region")
	alias(fs, "retention-period", "retention")
	alias(fs, "framerate", "fps")
	maxLatency := fs.Int("max-latency", 0, "kvssink's max-latency in seconds: same as --ack-timeout")
	staleness := fs.Int("connection-staleness", 0, "kvssink's connection-staleness in seconds: same as --ack-timeout")
	bufferSecs := fs.Int("buffer-duration", 0, "kvssink's buffer-duration in seconds: same as --buffer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, secs := range []int{*maxLatency, *staleness} {
		if secs > 0 {
			f.ackTimeout = time.Duration(secs) * time.Second
		}
	}
	if *bufferSecs > 0 {
		f.bufferDuration = time.Duration(*bufferSecs) * time.Second
	}
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "low-latency" {
			f.camera.LowLatency = &f.lowLatency
		}
	})
	f.camera.FPS = f.fps
	if f.stream == "" || f.src == "" {
		fs.Usage()
		return fmt.Errorf("%w: --stream and --source are required", errUsage)
	}
	log, err := newLogger(env, f.logLevel)
	if err != nil {
		return err
	}
	ctx, stop := stopOnSignals(log, os.Exit)
	defer stop()
	return put(ctx, env, log, f)
}

// stopOnSignals returns a context that ends at the first SIGINT or
// SIGTERM: kvsgo then stops reading its source, even in the middle of a
// blocked read, and delivers what it holds. A second signal quits at once
// (exit status 128 + the signal's number). stop releases the signals.
func stopOnSignals(log *slog.Logger, exit func(code int)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case s := <-sigs:
			log.Info("stopping: delivering what is buffered (a second Ctrl-C or SIGTERM quits at once)", "signal", s.String())
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("quitting at once: what was not yet persisted is lost", "signal", s.String())
			code := 1
			if n, ok := s.(syscall.Signal); ok {
				code = 128 + int(n)
			}
			exit(code)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		wg.Wait()
		cancel()
	}
}

// put streams until the source ends or ctx ends (a signal); then it waits
// for what was sent to be persisted.
func put(ctx context.Context, env *cliEnv, log *slog.Logger, f putFlags) error {
	awsCfg, endpoint, err := loadAWS(ctx, f)
	if err != nil {
		return err
	}
	src, closer, err := source.Open(f.src, source.Options{FPS: f.fps, Fast: f.fast, Camera: f.camera, RTSPTransport: f.rtspTransport, Logger: log.With("source", source.Label(f.src))})
	if err != nil {
		return err
	}
	if closer != nil {
		defer closer.Close()
	}
	pcfg := kvs.ProducerConfig{
		Stream:       kvs.StreamSetup{Name: f.stream, Create: !f.noCreate, RetentionHours: int32(f.retention), DeviceName: "kvsgo"},
		ControlPlane: kvs.NewSDKControlPlane(awsCfg, endpoint, nil), Credentials: awsCfg.Credentials, Region: awsCfg.Region,
		Logger: log, BufferDuration: f.bufferDuration, BufferBytes: int64(f.storageMB) << 20, AckTimeout: f.ackTimeout,
		GiveUpAfter: f.giveUp, CloseTimeout: f.close,
		AudioFragmentDuration: time.Duration(f.fragmentDuration) * time.Millisecond,
		OnEvent:               func(e kvs.Event) { logEvent(log, e) },
	}
	// The producer outlives a Ctrl-C: it still delivers what it holds.
	sink := &producerSink{ctx: context.WithoutCancel(ctx), cfg: pcfg}
	var wg sync.WaitGroup
	statusCtx, stopStatus := context.WithCancel(ctx)
	defer func() { stopStatus(); wg.Wait() }()
	if f.metricsAddr != "" {
		srv, err := serveProducerMetrics(f.metricsAddr, sink, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if !f.quiet && isTerminal(env.stderr) {
		wg.Add(1)
		go func() { defer wg.Done(); statusLine(statusCtx, env.stderr, sink) }()
	}
	start := time.Now()
	runErr := src.Run(ctx, sink)
	stopStatus()
	wg.Wait()
	p := sink.producer()
	if p == nil {
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("source %s: %w", f.src, runErr)
		}
		return fmt.Errorf("source %s produced no video", f.src)
	}
	st, closeErr := p.Close(context.Background())
	fmt.Fprintf(env.stdout, "kvsgo put: %d frames, %d fragments, %d persisted, %d errors, %d dropped fragments, %d reconnects, %d frames lost, %d discontinuities in %s\n",
		st.Frames, st.Fragments, st.Persisted, st.Errors, st.DroppedFragments, st.Reconnects, st.Lost.Total(), st.Discontinuities,
		time.Since(start).Round(100*time.Millisecond))
	if st.Lost.Total() > 0 {
		fmt.Fprintf(env.stdout, "kvsgo put: frames lost: %s\n", st.Lost)
	}
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, p.Err()):
		return fmt.Errorf("source %s: %w", f.src, runErr)
	case closeErr != nil:
		return closeErr
	case failingLosses(st.Lost, source.Live(f.src)) > 0:
		return lostError(st.Lost, source.Live(f.src))
	}
	return nil
}

// failingLosses counts the frames lost that make put fail: all but those
// of the user's own buffer limits (--buffer, --storage-size), which are
// theirs to choose, and, for a live source (a camera, a program), those
// before its first key frame of each (re)connection, which it sent before
// kvsgo could use them.
func failingLosses(l kvs.Losses, live bool) int64 {
	n := l.Unexpected()
	if live {
		n -= l.BeforeKeyFrame
	}
	return n
}

// lostError says why frames were lost and what to do.
func lostError(l kvs.Losses, live bool) error {
	var advice []string
	if l.BeforeKeyFrame > 0 && !live {
		advice = append(advice, "start the source at a key frame, or make the encoder send them often (ffmpeg -g, x264enc key-int-max)")
	}
	if l.Discontinuity > 0 {
		advice = append(advice, "the source's timestamps jumped back in the middle of a GOP (a spliced stream): join clips at key frames")
	}
	if l.OutOfOrder > 0 {
		advice = append(advice, "the source's timestamps go backwards or its tracks are far apart in time")
	}
	if l.TooLong > 0 {
		advice = append(advice, "set the encoder's key-frame interval to about the frame rate")
	}
	if l.Refused > 0 {
		advice = append(advice, "see the service's errors above")
	}
	if l.Undecodable > 0 {
		advice = append(advice, "cut MP4s at a key frame, or re-encode them, to keep the pictures after the cut")
	}
	if l.Damaged > 0 {
		advice = append(advice, "the input is damaged (packets missing): check the file, or the link it came over")
	}
	return fmt.Errorf("%d frames were not delivered (%s); %s", l.Total(), l, strings.Join(advice, "; "))
}

// loadAWS resolves region, credentials and the endpoint the standard way.
func loadAWS(ctx context.Context, f putFlags) (aws.Config, string, error) {
	var opts []func(*config.LoadOptions) error
	if f.region != "" {
		opts = append(opts, config.WithRegion(f.region))
	}
	if f.accessKey != "" || f.secretKey != "" {
		if f.accessKey == "" || f.secretKey == "" {
			return aws.Config{}, "", errors.New("--access-key and --secret-key go together")
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(f.accessKey, f.secretKey, f.sessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, "", fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, "", errors.New("no AWS region: give --region or set AWS_REGION")
	}
	endpoint := f.endpoint
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL_KINESIS_VIDEO")
	}
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	return cfg, strings.TrimSuffix(endpoint, "/"), nil
}

// producerSink starts the producer when the source knows its tracks, and
// counts the frames the source could not pass on among the producer's
// losses.
type producerSink struct {
	ctx     context.Context
	cfg     kvs.ProducerConfig
	mu      sync.Mutex
	p       *kvs.Producer
	dropped kvs.Losses // before the producer started
}

// Start starts the producer; a source calls it again when its tracks or
// their codec private data change (a new header), and the producer then
// carries on with a new header.
func (s *producerSink) Start(tracks []media.Track) error {
	if p := s.producer(); p != nil {
		return p.SetTracks(tracks)
	}
	p, err := kvs.NewProducer(s.ctx, s.cfg, tracks)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.p = p
	p.AddLost(s.dropped)
	s.mu.Unlock()
	return nil
}

// Drop counts frames the source could not pass on (it logs them).
func (s *producerSink) Drop(_ uint8, frames int, why source.Loss) {
	var l kvs.Losses
	switch why {
	case source.LossBeforeKeyFrame:
		l.BeforeKeyFrame = int64(frames)
	case source.LossUndecodable:
		l.Undecodable = int64(frames)
	default:
		l.Damaged = int64(frames)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		s.dropped = s.dropped.Add(l)
		return
	}
	s.p.AddLost(l)
}

var _ source.DropSink = (*producerSink)(nil)

func (s *producerSink) Frame(f media.Frame) error { return s.producer().Put(f) }

func (s *producerSink) producer() *kvs.Producer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

func logEvent(log *slog.Logger, e kvs.Event) {
	switch e.Type {
	case kvs.EventConnected:
		log.Info(e.Message)
	case kvs.EventAck:
		log.Debug("ack", "event", e.Ack.EventType, "timecode", e.Ack.FragmentTimecode, "fragment", e.Ack.FragmentNumber)
	case kvs.EventAckError, kvs.EventFatal:
		log.Error(e.Message)
	default:
		log.Warn(e.Message)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// statusLine redraws one line a second: rate, fragments, ack latency,
// buffer.
func statusLine(ctx context.Context, w io.Writer, s *producerSink) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last kvs.Stats
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-t.C:
		}
		p := s.producer()
		if p == nil {
			continue
		}
		st := p.Stats()
		state := "connecting"
		if st.Connected {
			state = "streaming"
		}
		fmt.Fprintf(w, "\r\033[K%s  %.1f fps  %.2f Mbit/s  fragments %d sent %d persisted  ack %s  buffered %s",
			state, float64(st.Frames-last.Frames), float64(st.BytesSent-last.BytesSent)*8/1e6,
			st.Fragments, st.Persisted, st.LastAckLatency.Round(time.Millisecond), st.BufferedDuration.Round(100*time.Millisecond))
		last = st
	}
}

// serveProducerMetrics serves /metrics and /healthz for a running put.
func serveProducerMetrics(addr string, s *producerSink, log *slog.Logger) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v func(kvs.Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if p := s.producer(); p != nil {
				return v(p.Stats())
			}
			return 0
		}))
	}
	gauge("kvsgo_put_frames", "Frames put.", func(st kvs.Stats) float64 { return float64(st.Frames) })
	gauge("kvsgo_put_discontinuities", "Jumps of the source's timestamps, re-based onto the stream's clock.", func(st kvs.Stats) float64 { return float64(st.Discontinuities) })
	for i, r := range (kvs.Losses{}).Reasons() {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvsgo_put_frames_lost",
			Help: "Frames that did not reach the service, by reason.", ConstLabels: prometheus.Labels{"reason": r.Name}}, func() float64 {
			if p := s.producer(); p != nil {
				return float64(p.Stats().Lost.Reasons()[i].Frames)
			}
			return 0
		}))
	}
	gauge("kvsgo_put_fragments", "Fragments started.", func(st kvs.Stats) float64 { return float64(st.Fragments) })
	gauge("kvsgo_put_fragments_persisted", "PERSISTED acks.", func(st kvs.Stats) float64 { return float64(st.Persisted) })
	gauge("kvsgo_put_ack_errors", "ERROR acks.", func(st kvs.Stats) float64 { return float64(st.Errors) })
	gauge("kvsgo_put_fragments_dropped", "Fragments dropped from a full buffer.", func(st kvs.Stats) float64 { return float64(st.DroppedFragments) })
	gauge("kvsgo_put_buffered_seconds", "Video not yet persisted.", func(st kvs.Stats) float64 { return st.BufferedDuration.Seconds() })
	gauge("kvsgo_put_ack_latency_seconds", "A fragment's last frame to its PERSISTED.", func(st kvs.Stats) float64 { return st.LastAckLatency.Seconds() })
	gauge("kvsgo_put_connected", "1 while streaming.", func(st kvs.Stats) float64 {
		if st.Connected {
			return 1
		}
		return 0
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		p := s.producer()
		if p == nil || p.Err() != nil || !p.Stats().Connected {
			http.Error(w, "not streaming", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	return srv, nil
}
