package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/whep"
	"github.com/kvsgo/kvsgo/mkv"
)

// liveProducer streams synthetic H.264 (an IDR every 30 frames, 30 fps,
// in real time) into PutMedia until stop is called.
func liveProducer(t *testing.T, ts *testServer, stream string) (stop func()) {
	t.Helper()
	sps := []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	avcc := []byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1, 0, byte(len(sps))}
	avcc = append(append(append(avcc, sps...), 1, 0, byte(len(pps))), pps...)
	pr, pw := io.Pipe()
	w, err := mkv.NewWriter(pw, mkv.Header{Tracks: []mkv.Track{{Number: 1, Type: mkv.TrackTypeVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: avcc, Width: 320, Height: 240}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		_, _ = putMedia(t, ts.URL, stream, pr, "RELATIVE")
	}()
	wrote := make(chan struct{})
	go func() {
		defer pw.Close()
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for i := 0; ; i++ {
			key := i%30 == 0
			nalu := bytes.Repeat([]byte{0xab}, 2500)
			nalu[0] = 0x41
			if key {
				nalu[0] = 0x65
			}
			data := binary.BigEndian.AppendUint32(nil, uint32(len(nalu)))
			if err := w.WriteFrame(1, time.Duration(i)*time.Second/30, key, append(data, nalu...)); err != nil {
				return
			}
			if i == 0 {
				close(wrote)
			}
			select {
			case <-done:
				return
			case <-tick.C: // the producer's pace: a frame every 1/30 s
			}
		}
	}()
	<-wrote
	return func() { close(done); <-finished }
}

// sigv4 signs a WHEP request with the test credentials.
func sigv4(req *http.Request) error {
	var body []byte
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return err
		}
		body, _ = io.ReadAll(rc)
	}
	sum := sha256.Sum256(body)
	return v4.NewSigner().SignHTTP(context.Background(), testCreds, req, hex.EncodeToString(sum[:]), "kinesisvideo", region, time.Now())
}

// dial connects a WHEP viewer. A producer that has just connected has no
// video for a moment (409, "sent no video yet"): it waits for that, at most
// 10 s.
func dial(t *testing.T, ts *testServer, stream string, hc *http.Client, sign func(*http.Request) error, opts ...whep.DialOption) (*whep.Client, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c, err := whep.Dial(ctx, ts.URL+"/whep/"+stream, hc, sign, opts...)
		cancel()
		var he *whep.HTTPError
		if errors.As(err, &he) && strings.Contains(he.Message, "sent no video yet") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // between tries of a condition with a deadline
			continue
		}
		return c, err
	}
}

func wantStatus(t *testing.T, err error, status int, text string) {
	t.Helper()
	var he *whep.HTTPError
	if !errors.As(err, &he) || he.Status != status || !strings.Contains(he.Message, text) {
		t.Fatalf("got %v, want HTTP %d saying %q", err, status, text)
	}
}

// TestWHEPPlaysLive: a WHEP viewer (pion) signed with SigV4 gets 201, the
// answer and a Location; it connects over loopback and receives the live
// frames as RTP: from a key frame (a STAP-A of the parameter sets first),
// none lost, timestamps 1/30 s apart. DELETE ends the session; a second
// DELETE finds none.
func TestWHEPPlaysLive(t *testing.T) {
	ts := startServer(t)
	ts.createStream(t, "cam", 1)
	stop := liveProducer(t, ts, "cam")
	defer stop()

	c, err := dial(t, ts, "cam", nil, sigv4)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Location(), ts.URL+"/whep/cam/") {
		t.Fatalf("Location %q", c.Location())
	}
	select {
	case <-c.Connected():
	case <-time.After(20 * time.Second):
		t.Fatal("not connected in 20 s")
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.Stats().Frames < 45 {
		if time.Now().After(deadline) {
			t.Fatalf("received %+v in 20 s", c.Stats())
		}
		time.Sleep(50 * time.Millisecond) // looking at a live stream, not a stand-in for a condition
	}
	if m := metricsText(t, ts.URL); !strings.Contains(m, "\nkvsgo_webrtc_viewers 1\n") {
		t.Fatalf("/metrics does not count the viewer:\n%s", m)
	}
	st := c.Stats()
	if st.FirstNALU != 24 || st.Lost != 0 {
		t.Fatalf("first NAL unit type %d (want 24, STAP-A), %d lost", st.FirstNALU, st.Lost)
	}
	for i := 1; i < len(st.Timestamps); i++ {
		// Millisecond timecodes: 33 or 34 ms at 90 kHz.
		if d := st.Timestamps[i] - st.Timestamps[i-1]; d != 2970 && d != 3060 {
			t.Fatalf("frames %d and %d are %d ticks apart, want 33 or 34 ms (1/30 s in milliseconds) at 90 kHz", i-1, i, d)
		}
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	wantStatus(t, c.Delete(context.Background()), http.StatusNotFound, "no such WebRTC session")
	_ = c.Close(context.Background())
	if m := metricsText(t, ts.URL); !strings.Contains(m, "\nkvsgo_webrtc_viewers 0\n") {
		t.Fatalf("/metrics still counts the viewer after DELETE:\n%s", m)
	}
}

// metricsText returns the server's /metrics.
func metricsText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestWHEPRefusals: every refusal is a status and plain words.
func TestWHEPRefusals(t *testing.T) {
	ts := startServer(t)
	ts.createStream(t, "cam", 1)
	ts.createStream(t, "idle", 1)
	stop := liveProducer(t, ts, "cam")
	defer stop()

	_, err := dial(t, ts, "cam", nil, nil)
	wantStatus(t, err, http.StatusUnauthorized, "sign in on the page first, or sign the request with SigV4")
	_, err = dial(t, ts, "cam", nil, func(r *http.Request) error {
		return v4.NewSigner().SignHTTP(context.Background(), testCreds, r, hex.EncodeToString(make([]byte, 32)), "kinesisvideo", region, time.Now())
	})
	wantStatus(t, err, http.StatusForbidden, "")
	_, err = dial(t, ts, "nosuch", nil, sigv4)
	wantStatus(t, err, http.StatusNotFound, "no stream named nosuch")
	_, err = dial(t, ts, "idle", nil, sigv4)
	wantStatus(t, err, http.StatusConflict, "no producer is streaming it right now")

	post := func(ct, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/whep/cam", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if err := sigv4(req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, msg := post("application/json", "{}"); code != http.StatusUnsupportedMediaType || !strings.Contains(msg, "application/sdp") {
		t.Fatalf("a JSON offer: %d %s", code, msg)
	}
	if code, msg := post("application/sdp", "not SDP"); code != http.StatusBadRequest || !strings.Contains(msg, "unusable SDP offer") {
		t.Fatalf("a broken offer: %d %s", code, msg)
	}
	audioOnly := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 " + strings.TrimSuffix(strings.Repeat("AB:", 32), ":") +
		"\r\na=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
	if code, msg := post("application/sdp", audioOnly); code != http.StatusBadRequest || !strings.Contains(msg, "H.264") {
		t.Fatalf("an offer without video: %d %s", code, msg)
	}
	if code, msg := post("application/sdp", strings.Repeat("a", 70<<10)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 70 KiB offer: %d %s", code, msg)
	}
}

// TestWHEPWithPageLogin: the page's login cookie opens WHEP as it opens
// the page; without credentials configured, WHEP is open as the page is.
func TestWHEPWithPageLogin(t *testing.T) {
	ts := startServer(t)
	ts.createStream(t, "cam", 1)
	stop := liveProducer(t, ts, "cam")
	defer stop()
	b := browser(t)
	if code, _ := login(t, b, ts.URL, testKey, testSecret); code != http.StatusSeeOther {
		t.Fatalf("login: %d", code)
	}
	origin := func(r *http.Request) error { r.Header.Set("Origin", ts.URL); return nil }
	c, err := dial(t, ts, "cam", b, origin)
	if err != nil {
		t.Fatalf("with the page's cookie: %v", err)
	}
	_ = c.Close(context.Background())
	_, err = dial(t, ts, "cam", b, func(r *http.Request) error { r.Header.Set("Origin", "http://elsewhere.example"); return nil })
	wantStatus(t, err, http.StatusForbidden, "cross-site request refused")
}
