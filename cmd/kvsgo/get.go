package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/internal/output"
	"github.com/kvsgo/kvsgo/kvs"
)

type getFlags struct {
	stream, start, format, out, endpoint, region string
	accessKey, secretKey, sessionToken           string
	untilCaughtUp                                bool
	giveUp                                       time.Duration
	logLevel                                     string
}

func runGet(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "get", "get --stream NAME [--start now|earliest|TIMESTAMP|FRAGMENT_NUMBER] [--until-caught-up] [--format mkv|annexb] [--endpoint URL] [-o FILE|-]")
	var f getFlags
	fs.StringVar(&f.stream, "stream", "", "Kinesis video stream to read (required)")
	fs.StringVar(&f.start, "start", "now", "where to start: now, earliest, a fragment number (after it), a producer time (2026-05-01T12:00:00Z, epoch seconds, or -5m for five minutes ago), or token:CONTINUATION_TOKEN")
	fs.BoolVar(&f.untilCaughtUp, "until-caught-up", false, "stop at the live edge instead of following the stream")
	fs.StringVar(&f.format, "format", "mkv", "output: mkv (Matroska, for players and recorders) or annexb (raw H.264/H.265 with parameter sets at every key frame, video only, for decoders and detectors)")
	fs.StringVar(&f.out, "o", "-", "output file, - for stdout")
	fs.StringVar(&f.endpoint, "endpoint", "", "control-plane URL, e.g. http://127.0.0.1:4567 for kvsgo serve (default: AWS, or AWS_ENDPOINT_URL_KINESIS_VIDEO)")
	fs.StringVar(&f.region, "region", "", "AWS region (default: the AWS configuration, AWS_REGION)")
	fs.StringVar(&f.accessKey, "access-key", "", "AWS access key ID (default: the standard AWS credential chain)")
	fs.StringVar(&f.secretKey, "secret-key", "", "AWS secret access key")
	fs.StringVar(&f.sessionToken, "session-token", "", "AWS session token")
	fs.DurationVar(&f.giveUp, "give-up-after", 2*time.Minute, "exit with an error after this long without a working connection")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.stream == "" {
		fs.Usage()
		return fmt.Errorf("%w: --stream is required", errUsage)
	}
	start, err := kvs.ParseStart(f.start, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log, err := newLogger(env, f.logLevel)
	if err != nil {
		return err
	}
	if _, err := output.New(f.format, io.Discard); err != nil { // before creating the file
		return fmt.Errorf("%w: --format: %v", errUsage, err)
	}
	var dst io.Writer = env.stdout
	if f.out != "-" {
		file, err := os.Create(f.out)
		if err != nil {
			return fmt.Errorf("cannot write the output: %w", err)
		}
		defer file.Close()
		dst = file
	} else if isTerminal(env.stdout) {
		return fmt.Errorf("%w: refusing to write video to the terminal; give -o FILE, or pipe it (e.g. | ffplay -)", errUsage)
	}
	bw := bufio.NewWriterSize(dst, 256<<10)
	w, err := output.New(f.format, bw)
	if err != nil {
		return fmt.Errorf("%w: --format: %v", errUsage, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	awsCfg, endpoint, err := loadAWS(ctx, putFlags{endpoint: f.endpoint, region: f.region, accessKey: f.accessKey, secretKey: f.secretKey, sessionToken: f.sessionToken})
	if err != nil {
		return err
	}
	r, err := kvs.NewReader(ctx, kvs.ReaderConfig{
		Stream: f.stream, Start: start, UntilCaughtUp: f.untilCaughtUp,
		Endpoints: kvs.NewSDKControlPlane(awsCfg, endpoint, nil), Credentials: awsCfg.Credentials, Region: awsCfg.Region,
		Logger: log, GiveUpAfter: f.giveUp,
	})
	if err != nil {
		return err
	}
	defer r.Close()
	began := time.Now()
	readErr := copyFrames(r, w, bw)
	// The end of the stream, or Ctrl-C: a normal end.
	benign := errors.Is(readErr, io.EOF) || (errors.Is(readErr, context.Canceled) && ctx.Err() != nil)
	if err := bw.Flush(); err != nil && benign {
		readErr, benign = fmt.Errorf("writing the output: %w", err), false
	}
	st := r.Stats()
	if !benign && st.Frames == 0 {
		if f.out != "-" {
			_ = os.Remove(f.out) // nothing in it
		}
		return readErr
	}
	log.Info("kvsgo get done", "frames", st.Frames, "fragments", st.Fragments, "reconnects", st.Reconnects,
		"repeats_dropped", st.Duplicates, "took", time.Since(began).Round(100*time.Millisecond))
	if tok := r.ContinuationToken(); tok != "" {
		log.Info("to go on from here", "start", "token:"+tok)
	}
	if benign {
		return nil
	}
	return readErr
}

// copyFrames writes frames until the reader ends. A frame is flushed at
// once when the reader would wait for the next one, so that a live stream
// reaches a pipe without delay; a backlog goes out in large writes.
func copyFrames(r *kvs.Reader, w output.Writer, bw *bufio.Writer) error {
	for {
		f, err := r.Next()
		if err != nil {
			return err
		}
		if err := w.WriteFrame(f); err != nil {
			return fmt.Errorf("writing the output: %w", err)
		}
		if f.Fragment != nil && bw.Buffered() > 0 && readerIdle(r) {
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("writing the output: %w", err)
			}
		}
	}
}

// readerIdle reports whether the reader has caught up, so output should
// not wait in a buffer: after a fragment near the live edge.
func readerIdle(r *kvs.Reader) bool {
	behind, ok := r.MillisBehindNow()
	return !ok || behind < 5*time.Second
}
