package kvs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// fakeKVS is a minimal PutMedia peer for unit tests and benchmarks: it
// demuxes the body and acknowledges each fragment, and reports when each
// frame arrived. The full server is tested against real clients elsewhere.
type fakeKVS struct {
	*httptest.Server
	mu      sync.Mutex
	onFrame func(data []byte)
	silent  bool // never acknowledge
	errorID int  // answer every fragment with this ERROR instead of PERSISTED
	noRead  bool // take the request and never read its body
	// dropAt ends the first session, unacknowledged, when its dropAt-th
	// cluster starts (0: never)
	dropAt int
	// log records, per session, each header (by its first track's width)
	// and cluster
	log      [][]string
	sessions int
	stop     chan struct{}
}

func (f *fakeKVS) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions
}

func newFakeKVS(tb testing.TB) *fakeKVS {
	f := &fakeKVS{stop: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(f.putMedia))
	tb.Cleanup(f.Close)
	// Runs before Close: a handler that does not read its body is not told
	// when the client goes away.
	tb.Cleanup(func() { close(f.stop) })
	return f
}

func (f *fakeKVS) PrepareStream(context.Context, StreamSetup) (string, int32, error) {
	return f.URL, 24, nil
}

func (f *fakeKVS) putMedia(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	f.mu.Lock()
	f.sessions++
	session := f.sessions
	f.log = append(f.log, nil)
	silent, errorID, noRead, dropAt := f.silent, f.errorID, f.noRead, f.dropAt
	f.mu.Unlock()
	record := func(s string) {
		f.mu.Lock()
		f.log[session-1] = append(f.log[session-1], s)
		f.mu.Unlock()
	}
	clusters := 0
	if noRead {
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		return
	}
	d := mkv.NewDemuxer(r.Body)
	wrote := false
	var tc int64
	open := false
	ack := func(e AckEvent) {
		if silent {
			return
		}
		if !wrote {
			w.WriteHeader(200)
			wrote = true
		}
		a := Ack{EventType: e, FragmentTimecode: tc, HasTimecode: true, FragmentNumber: "1"}
		_, _ = w.Write(a.AppendJSON(nil))
		_ = rc.Flush()
	}
	for {
		ev, err := d.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			break
		}
		switch ev.Type {
		case mkv.EventHeader:
			record(fmt.Sprintf("H%d", ev.Header.Tracks[0].Width))
		case mkv.EventCluster:
			clusters++
			if session == 1 && clusters == dropAt {
				return
			}
			record(fmt.Sprintf("C%d", ev.Timecode))
			tc, open = ev.Timecode, true
			ack(AckBuffering)
		case mkv.EventClusterEnd:
			if open && errorID != 0 {
				if !wrote {
					w.WriteHeader(200)
					wrote = true
				}
				a := ErrorAck(errorID, tc, true, "1")
				_, _ = w.Write(a.AppendJSON(nil))
				return // the service ends the response after an ERROR
			}
			if open {
				ack(AckReceived)
				ack(AckPersisted)
				open = false
			}
		case mkv.EventBlock:
			f.mu.Lock()
			cb := f.onFrame
			f.mu.Unlock()
			if cb != nil {
				cb(ev.Block.Frames[0])
			}
		}
	}
	if !wrote {
		w.WriteHeader(200)
	}
}

func testCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")
}

var testTrack = []media.Track{{Number: 1, Kind: media.KindVideo, CodecID: media.CodecH264, Width: 64, Height: 64,
	CodecPrivate: []byte{1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xce}}}

// stampedFrame carries the time it was put, for latency measurements.
func stampedFrame(buf []byte, n int, size int) media.Frame {
	buf = buf[:size]
	binary.BigEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
	return media.Frame{Track: 1, PTS: time.Duration(n) * time.Second / 30, DTS: time.Duration(n) * time.Second / 30, Key: n%30 == 0, Data: buf}
}
