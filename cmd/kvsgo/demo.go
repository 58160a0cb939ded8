//go:build !camera

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
)

const demoSummary = "run a local server with a test camera streaming into it, and show the web page"

// runDemo runs what `serve` and `put --source testsrc` run, in one
// process: a local server on a free loopback port with a temporary data
// directory, and the built-in test camera streaming into it live.
func runDemo(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "demo", "demo [--listen 127.0.0.1:0] [--stream demo]")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address for the local server (port 0: a free one)")
	stream := fs.String("stream", "demo", "name of the stream the test camera sends to")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !isLoopback(*listen) {
		return fmt.Errorf("%w: --listen %s: the demo takes any signature, so it listens on loopback only", errUsage, *listen)
	}
	log, err := newLogger(env, *logLevel)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kvsgo-demo-")
	if err != nil {
		return fmt.Errorf("creating a temporary data directory: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(env.stderr, "kvsgo demo: could not remove %s: %v\n", dir, err)
			return
		}
		fmt.Fprintf(env.stderr, "kvsgo demo: stopped; removed %s\n", dir)
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo(ctx, env, log, *listen, *stream, dir)
}

func demo(ctx context.Context, env *cliEnv, log *slog.Logger, listen, stream, dir string) error {
	st, err := store.Open(store.Options{Dir: dir, Logger: log.With("component", "store")})
	if err != nil {
		return err
	}
	defer st.Close()
	ls, err := startServer(log, server.Config{Store: st, Logger: log.With("component", "serve")}, listen, nil, defaultServeLimits())
	if err != nil {
		return err
	}
	defer func() { _ = ls.Stop(5 * time.Second) }()
	base := ls.URL

	created, err := st.CreateStream(store.NewStream{Name: stream, DeviceName: "kvsgo-demo", MediaType: "video/h264", RetentionHours: 1})
	if err != nil {
		return err
	}
	const key, secret, region = "demo", "demo", "us-east-1"
	f := putFlags{stream: stream, src: "testsrc", endpoint: base, region: region, accessKey: key, secretKey: secret,
		retention: 1, quiet: true, bufferDuration: 2 * time.Minute, storageMB: 64, ackTimeout: 10 * time.Second,
		giveUp: time.Minute, close: 5 * time.Second, rtspTransport: "tcp"}
	putDone := make(chan error, 1)
	go func() {
		putDone <- put(ctx, &cliEnv{stdout: io.Discard, stderr: env.stderr}, log.With("component", "put"), f)
	}()
	if err := waitFirstFragment(ctx, st, created.ID, putDone); err != nil {
		if ctx.Err() != nil {
			<-putDone
			return nil
		}
		return err
	}
	w := env.stdout
	fmt.Fprintf(w, "kvsgo demo: a local Kinesis Video Streams server, with a test camera streaming into it live\n")
	fmt.Fprintf(w, "  server   %s  (accepts any signature; data in %s, removed at exit)\n", base, dir)
	fmt.Fprintf(w, "  stream   %s  <- %s\n", stream, "the built-in test pattern (320x240 H.264, 30 fps, a key frame every second)")
	fmt.Fprintf(w, "  read it  kvsgo get --stream %s --endpoint %s --access-key %s --secret-key %s --region %s | ffplay -\n", stream, base, key, secret, region)
	fmt.Fprintf(w, "Ctrl-C stops it. The page:\n")
	fmt.Fprintf(w, "%s/\n", base)

	select {
	case <-ctx.Done():
		fmt.Fprintln(env.stderr, "kvsgo demo: stopping")
		if err := <-putDone; err != nil {
			log.Warn("the test camera stopped with an error", "error", err)
		}
		return nil
	case err := <-putDone:
		return fmt.Errorf("the test camera stopped: %w", err)
	case <-ls.Done():
		return fmt.Errorf("the server stopped: %w", ls.Err())
	}
}

// waitFirstFragment waits until the stream has its first fragment, so
// that the page shows it live at once.
func waitFirstFragment(ctx context.Context, st *store.Store, stream store.StreamID, putDone <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		latest, err := st.Latest(stream)
		if err != nil {
			return err
		}
		if latest > 0 {
			return nil
		}
		select {
		case err := <-putDone:
			if err == nil {
				err = errors.New("it ended")
			}
			return fmt.Errorf("the test camera stopped: %w", err)
		default:
		}
		// A second at most, to look at the camera in between.
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		_ = st.WaitAfter(wctx, stream, latest)
		wcancel()
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errors.New("the test camera sent nothing for 30 s")
			}
			return ctx.Err()
		}
	}
}
