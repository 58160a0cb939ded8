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
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvsgo/kvsgo/internal/source"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/kvs/iot"
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
	iot                                       iotOptions
	bufferDir                                 string
	bufferSizeMB                              int
	bufferAge                                 time.Duration
	// clockOffset moves the producer's clock, as a machine whose clock is
	// off would (the fault tests); not in the help.
	clockOffset time.Duration
}

// alias registers another name for a flag, for people coming from kvssink.
func alias(fs *flag.FlagSet, name, to string) {
	f := fs.Lookup(to)
	fs.Var(f.Value, name, "alias of --"+to+" (kvssink's name)")
}

func runPut(env *cliEnv, args []string) error {
	f, err := parsePutFlags(env, args)
	if err != nil {
		return err
	}
	log, err := newLogger(env, f.logLevel)
	if err != nil {
		return err
	}
	f.iot.cfg.Logger = log
	ctx, stop := stopOnSignals(log, os.Exit, f.lostOnQuit())
	defer stop()
	return f.iot.explain(put(ctx, env, log, f))
}

// parsePutFlags reads put's flags, kvssink's names in kvssink's units
// among them, into the settings the run uses.
func parsePutFlags(env *cliEnv, args []string) (putFlags, error) {
	var f putFlags
	fs, finish := putFlagSet(env, &f)
	if err := parseFlags(fs, args); err != nil {
		return f, err
	}
	err := finish() // before f is copied out: finish completes it
	return f, err
}

// lostOnQuit says what a second signal loses.
func (f *putFlags) lostOnQuit() string {
	if f.bufferDir != "" {
		return "what was not yet persisted stays in " + f.bufferDir + " for the next start"
	}
	return "what was not yet persisted is lost"
}

// putFlagSet defines put's flags for f on a new flag set: `kvsgo put`'s
// command line, and each stream of `kvsgo run --config`, whose keys are
// these flags' names. finish completes f once the flags are set.
func putFlagSet(env *cliEnv, f *putFlags) (fs *flag.FlagSet, finish func() error) {
	fs = newFlagSet(env, "put", "put --stream NAME --source SRC [--endpoint URL] [--region R]")
	fs.StringVar(&f.stream, "stream", "", "Kinesis video stream to send to (required; with AWS IoT, the thing name by default)")
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
	fs.IntVar(&f.storageMB, "storage-size", 128, "MB kept until the service has persisted it (with --buffer-dir: kept in memory when the disk cannot be written)")
	fs.StringVar(&f.bufferDir, "buffer-dir", "", "keep every fragment on disk in this directory until the service has persisted it: a crash, kill or power cut loses nothing buffered, and the next start with the same directory and stream sends it first")
	fs.IntVar(&f.bufferSizeMB, "buffer-size", 1024, "with --buffer-dir: MB of video kept on disk; past it the oldest fragments are evicted")
	fs.DurationVar(&f.bufferAge, "buffer-age", 24*time.Hour, "with --buffer-dir: how much older than the newest the oldest video kept may be; past it the oldest fragments are evicted")
	fs.DurationVar(&f.clockOffset, "clock-offset", 0, "")
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
	addIoTFlags(fs, &f.iot)
	// kvssink's property names, in its units (seconds), for people moving over.
	alias(fs, "stream-name", "stream")
	alias(fs, "aws-region", "region")
	alias(fs, "retention-period", "retention")
	alias(fs, "framerate", "fps")
	maxLatency := fs.Int("max-latency", 0, "kvssink's max-latency in seconds: same as --ack-timeout")
	staleness := fs.Int("connection-staleness", 0, "kvssink's connection-staleness in seconds: same as --ack-timeout")
	bufferSecs := fs.Int("buffer-duration", 0, "kvssink's buffer-duration in seconds: same as --buffer")
	return fs, func() error { return f.finish(fs, *maxLatency, *staleness, *bufferSecs) }
}

// finish folds kvssink's names in its units into f and checks what must
// go together, once fs has parsed the flags.
func (f *putFlags) finish(fs *flag.FlagSet, maxLatency, staleness, bufferSecs int) error {
	for _, secs := range []int{maxLatency, staleness} {
		if secs > 0 {
			f.ackTimeout = time.Duration(secs) * time.Second
		}
	}
	if bufferSecs > 0 {
		f.bufferDuration = time.Duration(bufferSecs) * time.Second
	}
	giveUpSet := false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "low-latency":
			f.camera.LowLatency = &f.lowLatency
		case "give-up-after":
			giveUpSet = true
		}
	})
	if f.bufferDir != "" && !giveUpSet {
		f.giveUp = 0 // a camera with a disk buffer records through any outage
	}
	if f.bufferDir != "" && (f.bufferSizeMB <= 0 || f.bufferAge <= 0) {
		return fmt.Errorf("%w: --buffer-size and --buffer-age must be more than 0", errUsage)
	}
	f.camera.FPS = f.fps
	if err := f.iot.resolve(f); err != nil {
		return err
	}
	if f.stream == "" || f.src == "" {
		fs.Usage()
		return fmt.Errorf("%w: --stream and --source are required", errUsage)
	}
	return nil
}

// stopOnSignals returns a context that ends at the first SIGINT or
// SIGTERM: kvsgo then stops reading its source, even in the middle of a
// blocked read, and delivers what it holds. A second signal quits at once
// (exit status 128 + the signal's number). stop releases the signals.
func stopOnSignals(log *slog.Logger, exit func(code int), lost string) (ctx context.Context, stop func()) {
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
			log.Warn("quitting at once: "+lost, "signal", s.String())
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
	return putStream(ctx, env, log, f, nil)
}

// putStream is put, telling started (when not nil) of the producer each
// time it starts: `kvsgo run` runs one per stream, each with its own
// context and logger, and shows the producers' stats.
func putStream(ctx context.Context, env *cliEnv, log *slog.Logger, f putFlags, started func(*kvs.Producer)) error {
	awsCfg, endpoint, err := loadAWS(ctx, f)
	if err != nil {
		return err
	}
	// No credentials check may hold up recording: AWS IoT's runs beside
	// the source, and ends the run only if the credentials are refused.
	ctx, failRun := context.WithCancelCause(ctx)
	defer failRun(nil)
	if f.iot.enabled() {
		go func() {
			if err := f.iot.check(ctx, awsCfg.Credentials); err != nil {
				failRun(err)
			}
		}()
	}
	setup := kvs.StreamSetup{Name: f.stream, Create: !f.noCreate, RetentionHours: int32(f.retention), DeviceName: "kvsgo"}
	pcfg := kvs.ProducerConfig{
		Stream: setup,
		// The stream is looked up while the source starts.
		ControlPlane: kvs.Prefetch(ctx, kvs.NewSDKControlPlane(awsCfg, endpoint, nil), setup),
		Credentials:  awsCfg.Credentials, Region: awsCfg.Region,
		Logger: log, BufferDuration: f.bufferDuration, BufferBytes: int64(f.storageMB) << 20, AckTimeout: f.ackTimeout,
		GiveUpAfter: f.giveUp, CloseTimeout: f.close,
		AudioFragmentDuration: time.Duration(f.fragmentDuration) * time.Millisecond,
		OnEvent:               func(e kvs.Event) { logEvent(log, e) },
	}
	if f.clockOffset != 0 {
		pcfg.Now = func() time.Time { return time.Now().Add(f.clockOffset) }
	}
	// The producer outlives a Ctrl-C: it still delivers what it holds.
	sink := &producerSink{ctx: context.WithoutCancel(ctx), cfg: pcfg, started: started}
	var disk *kvs.DiskBuffer
	if f.bufferDir != "" {
		var rec kvs.Recovery
		disk, rec, err = kvs.OpenDiskBuffer(kvs.DiskBufferConfig{Dir: f.bufferDir, Stream: f.stream, MemoryLimit: int64(f.storageMB) << 20,
			Logger: log, OnProblem: func(msg string) { log.Error(msg) }})
		if err != nil {
			return err
		}
		defer disk.Close()
		sink.cfg.Buffer, sink.cfg.BufferBytes, sink.cfg.BufferDuration = disk, int64(f.bufferSizeMB)<<20, f.bufferAge
		reportRecovery(log, rec)
		sink.dropped.Torn = rec.TornFrames()
		if rec.Fragments > 0 {
			// What an earlier run buffered goes out now, whether or not
			// the source ever starts.
			if err := sink.Start(nil); err != nil {
				return err
			}
		}
	}
	src, closer, err := source.Open(f.src, source.Options{FPS: f.fps, Fast: f.fast, Camera: f.camera, RTSPTransport: f.rtspTransport, Logger: log.With("source", source.Label(f.src))})
	if err != nil {
		return err
	}
	if closer != nil {
		defer closer.Close()
	}
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
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause // the credentials were refused
		}
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("source %s: %w", f.src, runErr)
		}
		return fmt.Errorf("source %s produced no video", f.src)
	}
	closeCtx, cancelClose := context.WithCancel(context.Background())
	defer cancelClose()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		cancelClose() // the credentials were refused: nothing more will be persisted
	}
	st, closeErr := p.Close(closeCtx)
	fmt.Fprintf(env.stdout, "kvsgo put: %d frames, %d fragments, %d persisted, %d errors, %d dropped fragments, %d reconnects, %d frames lost, %d discontinuities in %s\n",
		st.Frames, st.Fragments, st.Persisted, st.Errors, st.DroppedFragments, st.Reconnects, st.Lost.Total(), st.Discontinuities,
		time.Since(start).Round(100*time.Millisecond))
	if st.Recovered > 0 {
		fmt.Fprintf(env.stdout, "kvsgo put: %d fragments (%d frames) buffered on disk by an earlier run, sent first\n", st.Recovered, st.RecoveredFrames)
	}
	if st.Lost.Total() > 0 {
		fmt.Fprintf(env.stdout, "kvsgo put: frames lost: %s\n", st.Lost)
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // the credentials were refused
	}
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, p.Err()):
		return fmt.Errorf("source %s: %w", f.src, runErr)
	case closeErr != nil && disk != nil && st.BufferedFragments > 0:
		return fmt.Errorf("%w; they stay in %s, and the next start with the same --buffer-dir and --stream sends them", closeErr, disk.Dir())
	case closeErr != nil:
		return closeErr
	case failingLosses(st.Lost, source.Live(f.src)) > 0:
		return lostError(st.Lost, source.Live(f.src))
	}
	return nil
}

// reportRecovery says what a disk buffer held from an earlier run.
func reportRecovery(log *slog.Logger, rec kvs.Recovery) {
	for _, t := range rec.Torn {
		log.Warn("skipped a torn fragment file: it is not sent", "file", t.Name, "bytes", t.Bytes, "frames", t.Frames, "why", t.Why)
	}
	if rec.Fragments > 0 {
		log.Info(fmt.Sprintf("%d fragments (%d frames, %.1f MB, %s to %s) buffered by an earlier run in %s: they are sent first, oldest first",
			rec.Fragments, rec.Frames, float64(rec.Bytes)/1e6, rec.Oldest.UTC().Format(time.RFC3339), rec.Newest.UTC().Format(time.RFC3339), rec.Dir))
	}
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
	if f.iot.enabled() {
		creds, err := f.iot.credentials(ctx)
		if err != nil {
			return aws.Config{}, "", err
		}
		opts = append(opts, config.WithCredentialsProvider(creds))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, "", fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" && f.iot.enabled() {
		cfg.Region = iot.RegionFromEndpoint(f.iot.cfg.Endpoint) // the stream is usually in the thing's region
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
	started func(*kvs.Producer)
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
	if s.started != nil {
		s.started(p)
	}
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
	// The process's own: memory, open files, goroutines (what a long run
	// or a fault must not make grow).
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	gauge("kvsgo_put_fragments_dropped", "Fragments dropped (evicted) from a full buffer, or unreadable on disk.", func(st kvs.Stats) float64 { return float64(st.DroppedFragments) })
	gauge("kvsgo_put_fragments_recovered", "Fragments a disk buffer held from an earlier run, sent first.", func(st kvs.Stats) float64 { return float64(st.Recovered) })
	gauge("kvsgo_put_fragments_received", "RECEIVED acks.", func(st kvs.Stats) float64 { return float64(st.Received) })
	gauge("kvsgo_put_reconnects", "Connections lost and made again.", func(st kvs.Stats) float64 { return float64(st.Reconnects) })
	gauge("kvsgo_put_buffered_fragments", "Fragments not yet persisted.", func(st kvs.Stats) float64 { return float64(st.BufferedFragments) })
	gauge("kvsgo_put_buffered_bytes", "Bytes not yet persisted.", func(st kvs.Stats) float64 { return float64(st.BufferedBytes) })
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
	return listenMetrics(addr, mux, log)
}

// listenMetrics serves mux on addr (--metrics-addr) until the returned
// server is shut down.
func listenMetrics(addr string, mux *http.ServeMux, log *slog.Logger) (*http.Server, error) {
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
