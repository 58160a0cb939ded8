package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// Stopping must not wait for a read. A pipe that goes quiet (a camera
// pipeline that stalls, a writer that never closes) would otherwise hold
// Ctrl-C, `systemctl stop` and `docker stop` until the writer goes away.
// So the inputs a source blocks on are read so that their pending read ends
// when the source's context does.

// interruptible returns a reader of r whose reads end with ctx's error once
// ctx ends, even one that is blocked, and a release func to call when done.
func interruptible(ctx context.Context, r io.Reader) (io.Reader, func()) {
	f, ok := r.(*os.File)
	if !ok {
		return &ctxReader{ctx: ctx, r: r}, func() {}
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		return &ctxReader{ctx: ctx, r: f}, func() {} // reads of a file do not block
	}
	pf, reopened := pollable(f)
	if pf != nil {
		stop := context.AfterFunc(ctx, func() { _ = pf.SetReadDeadline(time.Unix(1, 0)) })
		return &ctxReader{ctx: ctx, r: pf}, func() {
			stop()
			if reopened {
				pf.Close()
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	return newAbandonableReader(ctx, f), cancel
}

// pollable returns f, or a new descriptor of the same pipe, whose reads Go's
// poller can interrupt with a deadline; nil if neither can be had.
func pollable(f *os.File) (*os.File, bool) {
	if f.SetReadDeadline(time.Time{}) == nil {
		return f, false // a pipe kvsgo made, or opened itself
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return nil, false
	}
	// Standard input arrives blocking, and making it non-blocking would
	// change it for the process on the other end too. Opening the pipe again
	// gives kvsgo a descriptor of its own (Linux; elsewhere this fails and
	// the fallback applies); O_NONBLOCK keeps the open from waiting for a
	// writer that has already gone.
	g, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, false
	}
	if g.SetReadDeadline(time.Time{}) != nil {
		g.Close()
		return nil, false
	}
	return g, true
}

// ctxReader turns the errors of reads cut short by the context into the
// context's error, so that a stop is not taken for a broken input.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && c.ctx.Err() != nil {
		return n, c.ctx.Err()
	}
	return n, err
}

// abandonableReader reads in a goroutine of its own, so that Read can give
// up when ctx ends. The goroutine stops at the first read that returns
// after that; until then it is blocked in the kernel, where nothing but
// data, the writer closing, or the process exiting can reach it.
type abandonableReader struct {
	ctx  context.Context
	r    io.Reader
	want chan int
	got  chan readResult
	busy bool // a read is under way
}

type readResult struct {
	data []byte
	err  error
}

func newAbandonableReader(ctx context.Context, r io.Reader) *abandonableReader {
	a := &abandonableReader{ctx: ctx, r: r, want: make(chan int), got: make(chan readResult, 1)}
	go a.loop()
	return a
}

func (a *abandonableReader) loop() {
	buf := make([]byte, 64<<10)
	for {
		var n int
		select {
		case n = <-a.want:
		case <-a.ctx.Done():
			return
		}
		m, err := a.r.Read(buf[:min(n, len(buf))])
		// The reader's own copy: a caller that gave up may reuse its buffer.
		a.got <- readResult{data: append([]byte(nil), buf[:m]...), err: err}
		if err != nil || a.ctx.Err() != nil {
			return
		}
	}
}

func (a *abandonableReader) Read(p []byte) (int, error) {
	if err := a.ctx.Err(); err != nil {
		return 0, err
	}
	if !a.busy {
		select {
		case a.want <- len(p):
			a.busy = true
		case <-a.ctx.Done():
			return 0, a.ctx.Err()
		}
	}
	select {
	case r := <-a.got:
		a.busy = false
		n := copy(p, r.data)
		if r.err != nil && !errors.Is(r.err, io.EOF) && a.ctx.Err() != nil {
			return n, a.ctx.Err()
		}
		return n, r.err
	case <-a.ctx.Done():
		return 0, a.ctx.Err()
	}
}

// stdin is the "-" source: it recognises the format when it runs, so that
// stopping reaches it even before the first bytes arrive, and reads so
// that a stalled pipe does not hold a stop.
type stdin struct {
	r    io.Reader
	opts Options
}

// Run implements Source.
func (s *stdin) Run(ctx context.Context, sink Sink) error {
	src, release, err := s.sniff(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := src.Run(ctx, sink); err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // stopped, not failed
		}
		return err
	}
	return nil
}

// sniff recognises the format and returns the source that reads it.
func (s *stdin) sniff(ctx context.Context) (Source, func(), error) {
	pace := false // a pipe delivers at its own pace
	if f, ok := s.r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			pace = !s.opts.Fast // kvsgo put --source - < file: a file
		}
	}
	in, release := interruptible(ctx, s.r)
	if pace {
		in = s.r // read in place (an MP4's index); a file does not block
	}
	src, err := Sniff(in, pace, s.opts)
	if err != nil {
		release()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("standard input: %w", err)
	}
	return src, release, nil
}
