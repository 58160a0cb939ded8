package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
)

// TestServeSurvivesKill9: `kvsgo serve` is killed with SIGKILL while a
// fragment is half received. After a restart every fragment it had
// acknowledged PERSISTED is there, nothing half-written is served, and
// ingest goes on.
func TestServeSurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--data", dir, "--access-key", creds.AccessKeyID, "--secret-key", creds.SecretAccessKey}
	srv := startServe(t, args...)
	createActive(t, srv.url, "crash", 24)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	var header []byte
	var fragments [][]byte
	for k := range 4 {
		h, f, _ := fixtureFragments(t, "h264-baseline.h264", start.Add(time.Duration(k)*3*time.Second))
		header, fragments = h, append(fragments, f...)
	}
	const whole = 8

	s := openSession(t, srv.url, "crash")
	if _, err := s.body.Write(header); err != nil {
		t.Fatal(err)
	}
	for _, f := range fragments[:whole] {
		if _, err := s.body.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	// Half of the next fragment: it completes the previous one.
	if _, err := s.body.Write(fragments[whole][:len(fragments[whole])/2]); err != nil {
		t.Fatal(err)
	}
	var persisted []string
	deadline := time.After(20 * time.Second)
	for len(persisted) < whole {
		select {
		case a, ok := <-s.acks:
			if !ok {
				t.Fatalf("session ended after %d PERSISTED acks", len(persisted))
			}
			if a.EventType == kvs.AckError {
				t.Fatalf("error ack %+v", a)
			}
			if a.EventType == kvs.AckPersisted {
				persisted = append(persisted, a.FragmentNumber)
			}
		case <-deadline:
			t.Fatalf("only %d PERSISTED acks: %s", len(persisted), srv.log.String())
		}
	}
	if err := srv.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = srv.cmd.Wait()
	s.body.Close()

	srv = startServe(t, args...)
	var listed struct {
		Fragments []struct{ FragmentNumber string }
	}
	if code := call(t, srv.url, "/listFragments", map[string]any{"StreamName": "crash"}, &listed); code != 200 {
		t.Fatalf("listFragments after restart: %d", code)
	}
	var after []string
	for _, f := range listed.Fragments {
		after = append(after, f.FragmentNumber)
	}
	if !slices.Equal(after, persisted) {
		t.Fatalf("after the restart the server has fragments %v; it had acknowledged %v", after, persisted)
	}

	// What GetMedia serves decodes to exactly the frames sent in those
	// fragments. (Its producer broke off rather than ending its stream, so
	// GetMedia waits at the live edge for more: read what is there.)
	got, _ := getMediaChunks(t, srv.url, "crash", map[string]any{"StartSelectorType": "EARLIEST"}, whole)
	src := filepath.Join(t.TempDir(), "sent.mkv")
	if err := os.WriteFile(src, bytes.Join(append([][]byte{header}, fragments[:whole]...), nil), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "got.mkv")
	if err := os.WriteFile(out, got, 0o644); err != nil {
		t.Fatal(err)
	}
	want := mediatest.FrameMD5(t, src, nil, "", "v:0")
	if back := mediatest.FrameMD5(t, out, nil, "", "v:0"); len(want) == 0 || !slices.Equal(back, want) {
		t.Fatalf("decoded %d frames after the crash, %d were sent in persisted fragments (or they differ)", len(back), len(want))
	}

	// The producer reconnects and resends from the first fragment not
	// persisted; numbers go on without repeating.
	s = openSession(t, srv.url, "crash")
	s.body.Write(header)
	for _, f := range fragments[whole:] {
		s.body.Write(f)
	}
	s.body.Close()
	n := 0
	for a := range s.acks {
		if a.EventType == kvs.AckPersisted {
			n++
			if slices.Contains(persisted, a.FragmentNumber) {
				t.Fatalf("fragment number %s given out twice", a.FragmentNumber)
			}
		}
	}
	if n != len(fragments)-whole {
		t.Fatalf("%d PERSISTED after the restart, want %d", n, len(fragments)-whole)
	}
}

// getMedia reads a stream from its earliest fragment to the end of its
// producer's stream: GetMedia ends a few seconds after the producer ended
// its PutMedia body.
func getMedia(t *testing.T, base, stream string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"StreamName": stream, "StartSelector": map[string]string{"StartSelectorType": "EARLIEST"}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/getMedia", bytes.NewReader(body))
	sum := sha256.Sum256(body)
	sign(t, req, hex.EncodeToString(sum[:]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("getMedia: %d %v %s (GetMedia ends only after the producer ended its stream)", resp.StatusCode, err, data)
	}
	return data
}
