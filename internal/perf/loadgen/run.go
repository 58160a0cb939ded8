package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
)

// Config describes one load test.
type Config struct {
	// Endpoint is the server's control-plane URL; streams are created
	// there and PutMedia goes to the endpoint it returns.
	Endpoint string
	// ServerPID is the server's process, for its CPU time and memory from
	// /proc; 0 leaves them out.
	ServerPID int
	Streams   int
	// Duration is how long each producer streams.
	Duration time.Duration
	// Ramp spreads the producers' starts [one GOP: every camera starting
	// within a second, as after a server restart].
	Ramp time.Duration
	// Warmup after the last start is left out of the steady-state
	// figures (and reported on its own): connecting hundreds of streams
	// at once makes a backlog the server needs a while to clear. The
	// steady window, from the last start plus Warmup to the first
	// producer's end, must hold at least two fragments.
	Warmup time.Duration
	Clip   *Clip
	// Prefix names the streams: PREFIX-0001, … ["loadtest"].
	Prefix string
	// AckWait bounds the wait for the last PERSISTED at the end [15 s].
	AckWait time.Duration
	Logger  *slog.Logger
}

// Result is what a load test measured.
type Result struct {
	Streams  int
	Clip     string  // e.g. "640x480 30 fps 1.00 Mbit/s"
	Bitrate  float64 // of one stream, bits per second
	Duration time.Duration
	// Fragments ended by the producers, and of those, persisted.
	FragmentsSent, FragmentsPersisted int
	// Errors: ERROR acks, refused or failed connections, and (counted
	// separately) fragments never acknowledged PERSISTED.
	Errors       int
	Missing      int
	ErrorSamples []string
	// Latency: a fragment's end handed to the socket → its PERSISTED ack,
	// for fragments that ended in the steady window or after.
	Latency perf.Summary
	// WarmupLatency is the same for fragments that ended before.
	WarmupLatency perf.Summary
	// Lag: how late the generator wrote frames behind their schedule. When
	// it is large, the machine could not run the generator in time and the
	// other figures understate the load.
	Lag perf.Summary
	// Window is the steady window: every producer streaming, warm-up
	// over. The server's and the generator's CPU are measured over it.
	Window       time.Duration
	Server       *perf.ProcUsage // CPU over the window, peak RSS over the server's life; nil when not measured
	GeneratorCPU time.Duration
	Load         perf.Load // at the end of the window
}

// ServerCores is the server's CPU over the window as a fraction of one
// core (0.25 = 25%).
func (r Result) ServerCores() float64 {
	if r.Server == nil || r.Window <= 0 {
		return 0
	}
	return r.Server.CPU().Seconds() / r.Window.Seconds()
}

// Run runs one load test: it creates the streams, connects every producer,
// starts them spread over one GOP (so fragments end at different times, as
// with independent cameras), streams for the duration, and collects.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Clip == nil || len(cfg.Clip.Frames) == 0 {
		return Result{}, errors.New("loadgen: no clip")
	}
	if cfg.Streams <= 0 {
		return Result{}, errors.New("loadgen: no streams")
	}
	if err := perf.CheckLoopback(cfg.Endpoint); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "loadtest"
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	gop := cfg.Clip.GOP
	if cfg.Ramp == 0 {
		cfg.Ramp = gop
	}
	if cfg.Duration < cfg.Ramp+cfg.Warmup+2*gop {
		return Result{}, fmt.Errorf("loadgen: %s of streaming leaves under two fragments of %s after a ramp of %s and a warm-up of %s: stream longer, or warm up shorter",
			cfg.Duration, gop, cfg.Ramp, cfg.Warmup)
	}
	// Bounded in time whatever happens.
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.Ramp+2*cfg.AckWait+2*time.Minute)
	defer cancel()

	names := make([]string, cfg.Streams)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%04d", cfg.Prefix, i+1)
	}
	cp := perf.NewControlPlane(cfg.Endpoint)
	if err := createAll(ctx, cp, names); err != nil {
		return Result{}, fmt.Errorf("loadgen: creating the streams on %s (is the server running there?): %w", cfg.Endpoint, err)
	}
	ep, err := cp.PutMediaEndpoint(ctx, names[0])
	if err != nil {
		return Result{}, err
	}
	epURL, err := url.Parse(ep)
	if err != nil || epURL.Host == "" {
		return Result{}, fmt.Errorf("loadgen: the server's PutMedia endpoint %q is not a URL", ep)
	}
	if err := perf.CheckLoopback(ep); err != nil {
		return Result{}, fmt.Errorf("loadgen: the server's PutMedia endpoint: %w", err)
	}
	cfg.Logger.Info("streams created", "streams", cfg.Streams, "putmedia", ep)

	producers := make([]*producer, cfg.Streams)
	for i, name := range names {
		p := &producer{name: name, clip: cfg.Clip, endpoint: epURL}
		if err := p.connect(ctx); err != nil {
			for _, q := range producers[:i] {
				q.conn.Close()
			}
			return Result{}, fmt.Errorf("producer %d of %d: %w", i+1, cfg.Streams, err)
		}
		producers[i] = p
	}
	var wg sync.WaitGroup
	for _, p := range producers {
		wg.Go(p.readAcks)
	}

	t0 := time.Now().Add(200 * time.Millisecond)
	for i, p := range producers {
		start := t0.Add(time.Duration(i) * cfg.Ramp / time.Duration(cfg.Streams))
		wg.Go(func() { p.stream(ctx, start, start.Add(cfg.Duration), cfg.AckWait) })
	}
	cfg.Logger.Info("streaming", "streams", cfg.Streams, "for", cfg.Duration)

	// The steady window: from the last producer's start and the warm-up
	// to the first one's end.
	res := Result{Streams: cfg.Streams, Bitrate: cfg.Clip.Bitrate(),
		Clip: fmt.Sprintf("%dx%d %.0f fps %.2f Mbit/s", cfg.Clip.Track.Width, cfg.Clip.Track.Height, cfg.Clip.FPS(), cfg.Clip.Bitrate()/1e6)}
	from, to := t0.Add(cfg.Ramp+cfg.Warmup), t0.Add(cfg.Duration)
	var before perf.ProcUsage
	var selfU, selfS time.Duration
	sleepUntil(ctx, from)
	if cfg.ServerPID > 0 {
		if before, err = perf.ReadProc(cfg.ServerPID); err != nil {
			cfg.Logger.Warn("cannot measure the server", "err", err)
			cfg.ServerPID = 0
		}
	}
	selfU, selfS = perf.SelfCPU()
	began := time.Now()
	sleepUntil(ctx, to)
	res.Window = time.Since(began)
	u, s := perf.SelfCPU()
	res.GeneratorCPU = u + s - selfU - selfS
	if cfg.ServerPID > 0 {
		if after, err := perf.ReadProc(cfg.ServerPID); err == nil {
			d := after.Sub(before)
			res.Server = &d
		}
	}
	res.Load, _ = perf.ReadLoad()
	wg.Wait()
	if cfg.ServerPID > 0 && res.Server != nil {
		// The peak over everything, the ends included.
		if after, err := perf.ReadProc(cfg.ServerPID); err == nil {
			res.Server.PeakRSS, res.Server.RSS = after.PeakRSS, after.RSS
		}
	}
	res.Duration = cfg.Duration

	var lat, warm, lag []time.Duration
	for _, p := range producers {
		p.mu.Lock()
		for _, l := range p.latencies {
			if l.ended.Before(from) {
				warm = append(warm, l.d)
			} else {
				lat = append(lat, l.d)
			}
		}
		lag = append(lag, p.lags...)
		res.FragmentsSent += p.sent
		res.FragmentsPersisted += p.persisted
		res.Errors += len(p.errs)
		res.ErrorSamples = append(res.ErrorSamples, p.errs...)
		p.mu.Unlock()
	}
	res.Missing = res.FragmentsSent - res.FragmentsPersisted
	res.Latency, res.WarmupLatency, res.Lag = perf.Summarize(lat), perf.Summarize(warm), perf.Summarize(lag)
	if len(res.ErrorSamples) > 5 {
		res.ErrorSamples = slices.Clone(res.ErrorSamples[:5])
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadgen: stopped before the end: %w", err)
	}
	return res, nil
}

// createAll creates the streams, a few at a time.
func createAll(ctx context.Context, cp *perf.ControlPlane, names []string) error {
	const workers = 8
	errs := make(chan error, len(names))
	next := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := range next {
				errs <- cp.CreateStream(ctx, n)
			}
		})
	}
	for _, n := range names {
		next <- n
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// Target is a server to put load on: its control-plane URL, its process
// when known (0 otherwise), and how to stop it.
type Target struct {
	Endpoint string
	PID      int
	Stop     func() error
}

// Steps runs one load test per stream count in ns, each against a fresh
// target, reporting each result as it comes. It stops after the first
// count whose p99 latency passes limit, or that loses fragments, unless
// keepGoing.
func Steps(ctx context.Context, base Config, ns []int, limit time.Duration, keepGoing bool,
	target func(context.Context) (Target, error), report func(Result)) ([]Result, error) {
	var out []Result
	for _, n := range ns {
		t, err := target(ctx)
		if err != nil {
			return out, err
		}
		cfg := base
		cfg.Streams, cfg.Endpoint, cfg.ServerPID = n, t.Endpoint, t.PID
		res, err := Run(ctx, cfg)
		stopErr := t.Stop()
		if err != nil {
			return out, fmt.Errorf("%d streams: %w", n, err)
		}
		if stopErr != nil {
			return out, stopErr
		}
		out = append(out, res)
		report(res)
		if !keepGoing && Over(res, limit) {
			break
		}
	}
	return out, nil
}

// Over reports whether a result misses the bar: p99 over limit, or
// fragments lost or refused.
func Over(r Result, limit time.Duration) bool {
	return r.Latency.P99 > limit || r.Missing > 0 || r.Errors > 0
}
