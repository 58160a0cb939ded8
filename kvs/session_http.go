package kvs

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// httpBody carries the body through net/http: a pipe its transport reads
// from, in a goroutine of its own. It serves a caller's HTTPClient and
// proxies.
type httpBody struct{ pw *io.PipeWriter }

func startHTTPSession(s *Session, client *http.Client, req *http.Request, offset time.Duration) *httpBody {
	if client == nil {
		client = http.DefaultClient
	}
	pr, pw := io.Pipe()
	req.Body = pr
	go func() {
		defer close(s.done)
		defer close(s.acks)
		resp, err := client.Do(req)
		if err != nil {
			s.err = fmt.Errorf("connecting to %s: %w", req.URL.Host, err)
			pr.CloseWithError(s.err)
			return
		}
		defer resp.Body.Close()
		s.err = s.response(resp, offset)
		if errors.Is(s.err, ErrRefused) {
			pr.CloseWithError(s.err)
			return
		}
		pr.CloseWithError(fmt.Errorf("the service ended the PutMedia response: %w", s.err))
	}()
	return &httpBody{pw: pw}
}

func (b *httpBody) Write(p []byte) (int, error) { return b.pw.Write(p) }
func (b *httpBody) TryWrite([]byte) bool        { return false } // a pipe write waits for its reader
func (b *httpBody) Pending() bool               { return false }
func (b *httpBody) Flush() error                { return nil }
func (b *httpBody) Close() error                { return b.pw.Close() }
func (b *httpBody) Abort(err error)             { b.pw.CloseWithError(err) }
