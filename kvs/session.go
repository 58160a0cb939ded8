package kvs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// emptyPayloadHash is what the C producer signs for its streamed body.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// SessionConfig describes one PutMedia connection.
type SessionConfig struct {
	Endpoint    string // the DataEndpoint, without /putMedia
	Stream      string
	Region      string
	Credentials aws.Credentials
	// HTTPClient, when set, carries the request (and net/http its body,
	// through a pipe). Without it, and without a proxy for the endpoint,
	// the session opens its own connection and writes each chunk of the
	// body straight to the socket: one system call per frame, no goroutine
	// in between.
	HTTPClient *http.Client
	Now        func() time.Time
	// ClockOffset is added to Now to sign the request: how far the
	// service's clock is ahead of this machine's.
	ClockOffset time.Duration
}

// Session is one long-lived PutMedia request: Write sends Matroska bytes
// as they come, Acks delivers the service's acknowledgements. Write,
// TryWrite, Flush and CloseBody are called by one writer at a time.
type Session struct {
	body   sessionBody
	acks   chan Ack
	done   chan struct{}
	err    error // why the response ended; valid once done is closed
	cancel context.CancelFunc
	opened time.Time
	now    func() time.Time
	// skew is the service's clock (its Date header) minus this machine's,
	// in nanoseconds, once the response has come; hasSkew says it did.
	skew    atomic.Int64
	hasSkew atomic.Bool
}

// sessionBody is how the request body reaches the connection.
type sessionBody interface {
	// Write sends p whole as one chunk, blocking.
	Write(p []byte) (int, error)
	// TryWrite hands p over without blocking: false when it cannot take
	// it now (then nothing of p was taken). What the socket does not take
	// at once is kept and goes out first with the next Flush or Write.
	TryWrite(p []byte) bool
	// Pending reports bytes TryWrite kept.
	Pending() bool
	// Flush sends what TryWrite kept, blocking.
	Flush() error
	// Close ends the body (the last chunk).
	Close() error
	// Abort breaks the body off with err.
	Abort(err error)
}

var errAborted = errors.New("connection aborted")

// ErrClockSkew is a PutMedia request the service refused because this
// machine's clock is far from its own; Session.Skew says by how much.
var ErrClockSkew = errors.New("the clock is off")

// skewThreshold is the clock difference that makes a refused signature a
// clock problem, as the AWS SDKs judge it.
const skewThreshold = 4 * time.Minute

// ErrRefused is a PutMedia request the service refused outright (not an
// ERROR ack): the HTTP status and AWS error name are in the message.
var ErrRefused = errors.New("PutMedia refused")

// OpenSession starts a PutMedia request. The request is sent at once; the
// body waits for the service's go-ahead (100 Continue), so the first
// Write may block until it comes.
func OpenSession(ctx context.Context, cfg SessionConfig) (*Session, error) {
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Endpoint+"/putMedia", nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("PutMedia endpoint %q: %w", cfg.Endpoint, err)
	}
	t := now().Add(cfg.ClockOffset)
	req.ContentLength = -1 // chunked
	h := req.Header
	h.Set("x-amzn-stream-name", cfg.Stream)
	h.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	h.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%d.%03d", t.Unix(), t.Nanosecond()/1e6))
	h.Set("x-amzn-fragment-acknowledgment-required", "1")
	h.Set("User-Agent", "kvsgo")
	if err := v4.NewSigner().SignHTTP(ctx, cfg.Credentials, req, emptyPayloadHash, "kinesisvideo", cfg.Region, t); err != nil {
		cancel()
		return nil, fmt.Errorf("signing PutMedia: %w", err)
	}
	// As AWS's producer does: the body waits for the service's go-ahead,
	// so that a refusal (credentials, clock, a second connection) comes at
	// once rather than after the server has drained the body. Not signed:
	// servers take it out of the headers they verify.
	h.Set("Expect", "100-continue")
	s := &Session{acks: make(chan Ack, 256), done: make(chan struct{}), cancel: cancel, opened: t, now: now}
	if cfg.HTTPClient == nil && !proxied(req) {
		s.body = startConnSession(ctx, s, req, cfg.ClockOffset)
	} else {
		s.body = startHTTPSession(s, cfg.HTTPClient, req, cfg.ClockOffset)
	}
	return s, nil
}

// proxied reports whether the environment sends the request through a
// proxy (HTTPS_PROXY and the like), which net/http knows how to use.
func proxied(req *http.Request) bool {
	u, err := http.ProxyFromEnvironment(req)
	return err != nil || u != nil
}

// response reads the service's answer: a refusal, or the acks until the
// response ends. It returns why the response ended.
func (s *Session) response(resp *http.Response, offset time.Duration) error {
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		s.skew.Store(int64(d.Sub(s.now())))
		s.hasSkew.Store(true)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var msg struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &msg)
		typ := resp.Header.Get("X-Amzn-ErrorType")
		typ, _, _ = strings.Cut(typ, ":")
		err := fmt.Errorf("%w: HTTP %d %s: %s", ErrRefused, resp.StatusCode, typ, msg.Message)
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
			if skew, ok := s.Skew(); ok && (skew-offset > skewThreshold || offset-skew > skewThreshold) {
				err = fmt.Errorf("%w (%w: the service's clock is %s ahead of this machine's)", err, ErrClockSkew, skew.Round(time.Second))
			} else {
				err = fmt.Errorf("%w (%w)", err, ErrAuth)
			}
		}
		return err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		a, err := ParseAck([]byte(line))
		if err != nil {
			continue // the C SDK skips what it cannot parse, too
		}
		s.acks <- a
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

// Skew returns how far the service's clock (its response's Date header)
// is ahead of this machine's, once the response has come.
func (s *Session) Skew() (time.Duration, bool) {
	return time.Duration(s.skew.Load()), s.hasSkew.Load()
}

// Write sends bytes on the connection as one chunk, after what TryWrite
// kept; it blocks until they are taken.
func (s *Session) Write(p []byte) (int, error) { return s.body.Write(p) }

// TryWrite sends p as one chunk if that can be done without blocking: it
// reports whether p was taken (whole: what the socket did not take at
// once is kept, and Pending says so until Flush sends it).
func (s *Session) TryWrite(p []byte) bool { return s.body.TryWrite(p) }

// Pending reports bytes TryWrite took that are not on the socket yet.
func (s *Session) Pending() bool { return s.body.Pending() }

// Flush sends what TryWrite kept, blocking.
func (s *Session) Flush() error { return s.body.Flush() }

// Acks returns the acknowledgements; the channel closes when the response
// ends.
func (s *Session) Acks() <-chan Ack { return s.acks }

// Done is closed when the response has ended; Err says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the response ended (io.EOF for a normal end); valid after
// Done is closed.
func (s *Session) Err() error { return s.err }

// CloseBody ends the request body, as at the end of a stream; the service
// then finishes its response.
func (s *Session) CloseBody() error { return s.body.Close() }

// Abort tears the connection down at once.
func (s *Session) Abort() {
	s.cancel()
	s.body.Abort(errAborted)
	<-s.done
}
