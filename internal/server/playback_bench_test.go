package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/mkv"
)

// BenchmarkPersistedToLivePlaylist measures, with the real store and HTTP,
// the time from a fragment being stored (when PutMedia sends PERSISTED) to
// a LIVE media playlist that names it reaching a player that asked for it
// with a blocking reload (_HLS_msn).
func BenchmarkPersistedToLivePlaylist(b *testing.B) {
	st, err := store.Open(store.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv := server.New(server.Config{Store: st})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	defer srv.Shutdown(context.Background())
	live, err := st.CreateStream(store.NewStream{Name: "live", RetentionHours: 1})
	if err != nil {
		b.Fatal(err)
	}
	header, bodies := fixtureClusters(b)
	body := bodies[0]
	base := time.Now().Add(-time.Second).UnixMilli()
	app := func(i int) {
		if _, _, err := st.AppendFragment(live.ID, store.NewFragment{Header: header, Body: body,
			ProducerMS: base + int64(i)*1000, ServerMS: time.Now().UnixMilli(), DurationMS: 1000}); err != nil {
			b.Fatal(err)
		}
	}
	app(0)
	u := liveSession(b, srv, hs.URL)
	media := strings.Replace(u, "getHLSMasterPlaylist", "getHLSMediaPlaylist", 1) + "&TrackNumber=1"
	var total time.Duration
	for i := 1; b.Loop(); i++ {
		type result struct {
			at   time.Time
			body []byte
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := http.Get(media + "&_HLS_msn=" + strconv.Itoa(i))
			if err != nil {
				done <- result{err: err}
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- result{time.Now(), body, err}
		}()
		time.Sleep(5 * time.Millisecond) // let the request reach the live edge and wait there
		app(i)
		stored := time.Now()
		r := <-done
		if r.err != nil || !bytes.Contains(r.body, []byte("#EXT-X-MEDIA-SEQUENCE")) || bytes.Count(r.body, []byte("#EXTINF")) != min(i+1, 5) {
			b.Fatalf("playlist %d: %v\n%s", i, r.err, r.body)
		}
		total += r.at.Sub(stored)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/persisted-to-playlist")
}

// fixtureClusters cuts the fixture's Matroska stream into what the store
// keeps: the stream header, and each Cluster (one fragment each).
func fixtureClusters(tb testing.TB) (header []byte, bodies [][]byte) {
	data := mediatest.ReadFixture(tb, "h264-aac.mkv")
	d := mkv.NewDemuxer(bytes.NewReader(data))
	var start int64 = -1
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		switch ev.Type {
		case mkv.EventHeader:
			// As a producer sends it: the Segment of unknown size (the
			// fixture's file has a sized one).
			if header, err = mkv.AppendHeader(nil, ev.Header); err != nil {
				tb.Fatal(err)
			}
		case mkv.EventCluster:
			start = ev.Offset
		case mkv.EventClusterEnd:
			bodies = append(bodies, data[start:ev.End])
		}
	}
	if len(bodies) < 4 {
		tb.Fatalf("the fixture has %d clusters", len(bodies))
	}
	return header, bodies
}

func liveSession(b *testing.B, srv *server.Server, base string) string {
	u, err := srv.NewSession(context.Background(), "live", "LIVE", time.Time{}, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	return base + u
}
