package server

import (
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"testing"
)

// splitReader hands out its input in pieces of the given sizes, as a
// network connection does.
type splitReader struct {
	data  []byte
	sizes []int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := len(s.data)
	if len(s.sizes) > 0 {
		n = max(1, min(n, s.sizes[0]))
		s.sizes = s.sizes[1:]
	}
	n = copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

func readAllChunked(t *testing.T, r io.Reader, bufSize int) ([]byte, error) {
	t.Helper()
	c := newChunkedBody(r)
	var out []byte
	buf := make([]byte, bufSize)
	for range 1 << 20 {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
	t.Fatal("no end")
	return nil, nil
}

func chunkedOf(parts ...[]byte) []byte {
	var b bytes.Buffer
	w := httputil.NewChunkedWriter(&b)
	for _, p := range parts {
		_, _ = w.Write(p)
	}
	_ = w.Close()
	b.WriteString("\r\n") // no trailers
	return b.Bytes()
}

func TestChunkedBody(t *testing.T) {
	body := chunkedOf([]byte("hello "), bytes.Repeat([]byte("x"), 5000), []byte("world"))
	want := append(append([]byte("hello "), bytes.Repeat([]byte("x"), 5000)...), "world"...)
	for _, split := range [][]int{nil, {1}, {3, 7, 1, 1, 2}, {4096}} {
		sizes := make([]int, 0, 100000)
		for len(sizes) < 100000 {
			if len(split) == 0 {
				sizes = append(sizes, len(body))
			} else {
				sizes = append(sizes, split...)
			}
		}
		got, err := readAllChunked(t, &splitReader{data: body, sizes: sizes}, 4096)
		if !errors.Is(err, io.EOF) || !bytes.Equal(got, want) {
			t.Fatalf("split %v: %d bytes, %v", split, len(got), err)
		}
	}
	good := map[string]string{
		"5\r\nhello\r\n0\r\n\r\n":                "hello",
		"5;name=value\r\nhello\r\n0\r\n\r\n":     "hello",
		"5 \r\nhello\r\n0\r\nTrailer: x\r\n\r\n": "hello",
		"0000000000000005\r\nhello\r\n0\r\n\r\n": "hello",
		"5\r\nhello\r\n0\r\n\n":                  "hello", // a bare LF ends a trailer line, as in headers
	}
	for in, want := range good {
		got, err := readAllChunked(t, bytes.NewReader([]byte(in)), 64)
		if !errors.Is(err, io.EOF) || string(got) != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	bad := []string{
		"5\r\nhelloX\r\n0\r\n\r\n",   // data longer than its size
		"\r\nhello",                  // no size
		"5 5\r\nhello\r\n0\r\n\r\n",  // space inside the size
		"g\r\n",                      // not hex
		"10000000000000000\r\n",      // over 64 bits
		"5\r\nhello\r\n0\r\n\r\nGET", // bytes after the body
		"5\nhello\r\n0\r\n\r\n",      // a size line ending in a bare LF (RFC 9112 errata 7633)
		"0\n\n",                      // the same, found by FuzzChunkedBody
	}
	for _, in := range bad {
		if _, err := readAllChunked(t, bytes.NewReader([]byte(in)), 64); !errors.Is(err, errChunked) {
			t.Errorf("%q: %v, want a malformed-encoding error", in, err)
		}
	}
	if _, err := readAllChunked(t, bytes.NewReader([]byte("5\r\nhel")), 64); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut short: %v", err)
	}
}

// FuzzChunkedBody: any input the decoder reads as a whole body, net/http's
// own chunked reader reads as the same bytes; it never panics; and it
// decodes what net/http's writer encodes, however the connection splits it.
func FuzzChunkedBody(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), []byte{3, 1, 4})
	f.Add(chunkedOf([]byte("abc"), []byte("defgh")), []byte{1})
	f.Add([]byte("5;x\r\nhello\r\n0\r\nA: b\r\n\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, data, split []byte) {
		sizes := make([]int, len(split))
		for i, b := range split {
			sizes[i] = int(b)
		}
		mine, err := readAllChunked(t, &splitReader{data: data, sizes: sizes}, 64)
		if errors.Is(err, io.EOF) {
			oracle, oerr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data)))
			if oerr != nil || !bytes.Equal(oracle, mine) {
				t.Fatalf("decoded %q as a whole body; net/http decodes %q, %v", mine, oracle, oerr)
			}
		}
		// Its own encoding of the input, read back.
		enc := chunkedOf(data, split)
		got, err := readAllChunked(t, &splitReader{data: enc, sizes: append([]int(nil), sizes...)}, 64)
		if !errors.Is(err, io.EOF) || !bytes.Equal(got, append(append([]byte(nil), data...), split...)) {
			t.Fatalf("round trip: %q %v", got, err)
		}
	})
}
