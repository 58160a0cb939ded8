package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// Runner streams one stream until ctx ends (then it delivers what it
// holds and returns) or it fails. It calls started with the producer each
// time one starts, so the stream's stats can be shown.
type Runner func(ctx context.Context, s Stream, log *slog.Logger, started func(*kvs.Producer)) error

// SupervisorConfig is what a Supervisor needs.
type SupervisorConfig struct {
	Run    Runner
	Logger *slog.Logger
	// Backoff is the wait before the n-th retry in a row (n from 0);
	// nil: 1 s doubling up to 30 s.
	Backoff func(n int) time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Supervisor runs one producer per stream, each on its own: a stream
// that fails is retried with back-off and never stops the others.
type Supervisor struct {
	cfg     SupervisorConfig
	mu      sync.Mutex
	workers map[string]*worker
	order   []string
	// draining: streams removed or changed by a reload that are still
	// delivering what they hold; they stay in Status (Stopping) until done.
	draining []*worker
	stopped  bool
}

// NewSupervisor returns a supervisor running nothing yet: Apply starts
// streams.
func NewSupervisor(cfg SupervisorConfig) *Supervisor {
	if cfg.Backoff == nil {
		cfg.Backoff = func(n int) time.Duration { return min(time.Second<<min(n, 5), 30*time.Second) }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Supervisor{cfg: cfg, workers: map[string]*worker{}}
}

// Change is what Apply did, by stream name.
type Change struct {
	Kept, Stopped, Restarted, Started []string
}

// Apply makes the running set the given streams: an unchanged stream is
// left alone (its connection too), a removed one stops and delivers what
// it holds, a changed one stops so and starts again, a new one starts.
// It returns once the stopped ones have stopped.
func (s *Supervisor) Apply(streams []Stream) Change {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return Change{}
	}
	var ch Change
	want := map[string]Stream{}
	for _, st := range streams {
		want[st.Name] = st
	}
	var stopping []*worker
	for _, name := range s.order {
		w := s.workers[name]
		st, ok := want[name]
		switch {
		case !ok:
			ch.Stopped = append(ch.Stopped, name)
		case !w.stream.Same(st):
			ch.Restarted = append(ch.Restarted, name)
		default:
			ch.Kept = append(ch.Kept, name)
			continue
		}
		stopping = append(stopping, w)
		delete(s.workers, name)
	}
	s.order = s.order[:0]
	for _, st := range streams {
		s.order = append(s.order, st.Name)
	}
	s.draining = append(s.draining, stopping...)
	s.mu.Unlock()

	// Stop in parallel: each delivers its buffer within its close
	// timeout, the others keep streaming meanwhile.
	for _, w := range stopping {
		w.stop()
	}
	for _, w := range stopping {
		<-w.done
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = slices.DeleteFunc(s.draining, func(w *worker) bool { return slices.Contains(stopping, w) })
	for _, st := range streams {
		if _, ok := s.workers[st.Name]; ok {
			continue
		}
		if !contains(ch.Restarted, st.Name) {
			ch.Started = append(ch.Started, st.Name)
		}
		if s.stopped {
			continue
		}
		s.workers[st.Name] = s.start(st)
	}
	return ch
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Stop stops every stream, each delivering what it holds, and returns the
// errors of those that could not.
func (s *Supervisor) Stop() error {
	s.mu.Lock()
	s.stopped = true
	workers := make([]*worker, 0, len(s.workers))
	for _, name := range s.order {
		if w := s.workers[name]; w != nil {
			workers = append(workers, w)
		}
	}
	s.mu.Unlock()
	for _, w := range workers {
		w.stop()
	}
	var errs []error
	for _, w := range workers {
		<-w.done
		if err := w.final; err != nil {
			errs = append(errs, fmt.Errorf("stream %s did not deliver everything it held: %w", w.stream.Name, err))
		}
	}
	return errors.Join(errs...)
}

// State is where a stream is.
type State string

const (
	Starting  State = "starting"  // its source and producer are starting
	Streaming State = "streaming" // connected, sending
	Retrying  State = "retrying"  // it failed and waits to start again
	Stopping  State = "stopping"  // delivering what it holds
)

// Status is one stream's state, for the status view, /metrics and
// /healthz.
type Status struct {
	Name     string
	State    State
	Err      error     // why it last failed
	RetryAt  time.Time // when Retrying
	Restarts int       // since it was started (not counting reloads)
	Stats    kvs.Stats // of the current producer, if any
	HasStats bool
}

// Healthy: streaming and acknowledged.
func (st Status) Healthy() bool {
	return st.State == Streaming && st.HasStats && st.Stats.Connected && st.Err == nil
}

// Status returns every stream's, in the file's order, then those a
// reload stopped that are still delivering what they hold.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	workers := make([]*worker, 0, len(s.order)+len(s.draining))
	for _, name := range s.order {
		if w := s.workers[name]; w != nil {
			workers = append(workers, w)
		}
	}
	workers = append(workers, s.draining...)
	s.mu.Unlock()
	out := make([]Status, 0, len(workers))
	for _, w := range workers {
		out = append(out, w.status())
	}
	return out
}

// worker runs one stream until cancelled.
type worker struct {
	stream Stream
	cancel context.CancelFunc
	done   chan struct{}
	final  error // set before done closes

	mu       sync.Mutex
	state    State
	err      error
	retryAt  time.Time
	restarts int
	p        *kvs.Producer
	logged   string // the last error the run logged
}

func (s *Supervisor) start(st Stream) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{stream: st, cancel: cancel, done: make(chan struct{}), state: Starting}
	go w.loop(ctx, s.cfg)
	return w
}

// stableAfter is how long a run must last for the next failure to count
// as the first in a row again.
const stableAfter = time.Minute

func (w *worker) loop(ctx context.Context, cfg SupervisorConfig) {
	defer close(w.done)
	// The run's errors are noted: a source retrying its camera by itself
	// says why only in its log, and the status shows it.
	log := slog.New(&noteErrors{Handler: cfg.Logger.Handler(), w: w}).With("stream", w.stream.Name)
	for n := 0; ; {
		began := cfg.Now()
		err := cfg.Run(ctx, w.stream, log, w.started)
		if ctx.Err() != nil {
			// Stopped (signal, reload): the run delivered what it held.
			if err != nil && !errors.Is(err, context.Canceled) && w.producer() != nil {
				log.Error("stopped, but not everything was delivered", "err", err)
				w.final = err
			}
			return
		}
		if cfg.Now().Sub(began) > stableAfter {
			n = 0
		}
		wait := cfg.Backoff(n)
		n++
		if err == nil {
			err = errors.New("the source ended")
		}
		log.Error("stream failed; the other streams go on; retrying", "err", err, "in", wait)
		w.mu.Lock()
		if w.state != Stopping {
			w.state = Retrying
		}
		w.err, w.retryAt, w.p = err, cfg.Now().Add(wait), nil
		w.restarts++
		w.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		w.mu.Lock()
		if w.state == Retrying {
			w.state = Starting
		}
		w.mu.Unlock()
	}
}

// stop asks the run to end; it delivers what it holds first.
func (w *worker) stop() {
	w.mu.Lock()
	w.state = Stopping
	w.mu.Unlock()
	w.cancel()
}

func (w *worker) started(p *kvs.Producer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.p, w.err, w.logged = p, nil, ""
	if w.state == Starting {
		w.state = Streaming
	}
}

func (w *worker) producer() *kvs.Producer {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.p
}

func (w *worker) status() Status {
	w.mu.Lock()
	st := Status{Name: w.stream.Name, State: w.state, Err: w.err, RetryAt: w.retryAt, Restarts: w.restarts}
	if st.Err == nil && w.logged != "" && w.state == Starting {
		st.Err = errors.New(w.logged)
	}
	p := w.p
	w.mu.Unlock()
	if p != nil {
		st.Stats, st.HasStats = p.Stats(), true
		if p.Err() != nil && st.State == Streaming {
			st.Err = p.Err()
		}
	}
	return st
}

// noteErrors passes records on and notes the last error-level one's
// message (and its err or reason) in the worker.
type noteErrors struct {
	slog.Handler
	w *worker
}

func (h *noteErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" || a.Key == "reason" {
				msg += ": " + a.Value.String()
				return false
			}
			return true
		})
		h.w.mu.Lock()
		h.w.logged = msg
		h.w.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *noteErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return &noteErrors{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *noteErrors) WithGroup(name string) slog.Handler {
	return &noteErrors{Handler: h.Handler.WithGroup(name), w: h.w}
}
