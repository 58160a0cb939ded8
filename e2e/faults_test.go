package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
)

// The fault suite: the real kvsgo put streams unique-frame clips into the
// real kvsgo serve, on loopback, through the faults a camera meets. Each
// case checks that GetMedia gives every frame once (or exactly the frames
// put says it could not deliver, and why), that put's goroutines and open
// files come back to where they were before the fault, and that its memory
// stays bounded; and records a row of docs/RELIABILITY.md.

// maxPutRSS bounds put's memory in the fault cases (its buffers are 128 MB
// by default; the clips are small).
const maxPutRSS = 200 << 20

// startPut runs kvsgo put in the background; wait returns its output.
func startPut(t *testing.T, args ...string) (wait func() (string, string, int)) {
	t.Helper()
	p := startPutProc(t, nil, args...)
	return func() (string, string, int) { return p.wait(t) }
}

// checkEveryFrameOnce: what GetMedia returns decodes to the source's
// frames, each exactly once, in order.
func checkEveryFrameOnce(t *testing.T, base, stream, src string) {
	t.Helper()
	want := mediatest.FrameMD5(t, src, nil, "h264", "v:0")
	back := framesBack(t, base, stream)
	if !slices.Equal(back, want) {
		lost, extra := compareFrames(back, want)
		t.Fatalf("GetMedia decodes to %d frames; the source has %d (%d missing, %d extra)", len(back), len(want), lost, extra)
	}
}

func waitFragments(t *testing.T, base, stream string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var l struct{ Fragments []json.RawMessage }
		if call(t, base, "/listFragments", map[string]any{"StreamName": stream}, &l) == 200 && len(l.Fragments) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fewer than %d fragments arrived", n)
}

func serveArgs(dir string) []string {
	return []string{"--data", dir, "--access-key", creds.AccessKeyID, "--secret-key", creds.SecretAccessKey}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }

// faultCase is one run of the suite: put streaming a clip to serve.
type faultCase struct {
	t      *testing.T
	stream string
	src    string
	put    *putProc
	before health
}

// streaming starts put and waits until it is steady (three fragments
// persisted), taking its health then.
func streaming(t *testing.T, stream, src, endpoint string, extra ...string) *faultCase {
	t.Helper()
	return streamingWith(t, stream, src, append([]string{"--stream", stream, "--source", src, "--endpoint", endpoint, "--ack-timeout", "2s"}, extra...)...)
}

// streamingWith is streaming with put's whole command line.
func streamingWith(t *testing.T, stream, src string, args ...string) *faultCase {
	t.Helper()
	c := &faultCase{t: t, stream: stream, src: src, put: startPutProc(t, nil, args...)}
	c.put.waitMetric(t, "kvsgo_put_fragments_persisted", time.Minute, atLeast(3))
	c.before = c.put.health(t)
	return c
}

func (c *faultCase) persisted() float64 { return c.put.metric("kvsgo_put_fragments_persisted") }

// finish checks that put settles back to its health, waits for it to end,
// and compares GetMedia's frames with the source's.
func (c *faultCase) finish(base string) (out, errOut string, code, lost, extra int, after health) {
	t := c.t
	t.Helper()
	after = c.put.settled(t, c.before, maxPutRSS)
	out, errOut, code = c.put.wait(t)
	want := mediatest.FrameMD5(t, c.src, nil, "h264", "v:0")
	lost, extra = compareFrames(framesBack(t, base, c.stream), want)
	return out, errOut, code, lost, extra, after
}

// busiestSecond is the most fragments the server started receiving
// within one second (ServerTimestamp): the service takes at most 5.
func busiestSecond(t *testing.T, base, stream string) int {
	t.Helper()
	var ts []float64
	for _, f := range listAll(t, base, stream) {
		ts = append(ts, f.ServerTimestamp)
	}
	slices.Sort(ts)
	most := 0
	for i := range ts {
		j := i
		for j < len(ts) && ts[j]-ts[i] < 1 {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

// reported is put's own count of frames lost, from its summary.
func reported(t *testing.T, out string) int { return parseSummary(t, out).lost }

// TestFaultServerKilledFiveTimes: kvsgo serve is killed with SIGKILL and
// restarted five times in a minute while put streams: put reconnects each
// time and sends again what was not persisted; every frame arrives once.
func TestFaultServerKilledFiveTimes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	srv := startServeAt(t, listen, serveArgs(dir)...)
	c := streaming(t, "kill", uniqueClip(t, 75, false), srv.url)
	var recoveries []time.Duration
	first := time.Now()
	var last time.Time
	for i := range 5 {
		if i > 0 {
			time.Sleep(time.Until(first.Add(time.Duration(i) * 12 * time.Second))) // five kills spread over a minute
		}
		last = time.Now()
		_ = srv.cmd.Process.Kill()
		_ = srv.cmd.Wait()
		before := c.persisted()
		time.Sleep(time.Second) // the server is down
		srv = startServeAt(t, listen, serveArgs(dir)...)
		recoveries = append(recoveries, c.put.recovery(t, time.Now(), before))
	}
	if span := last.Sub(first); span > time.Minute {
		t.Fatalf("the kills took %s", span)
	}
	out, errOut, code, lost, extra, after := c.finish(srv.url)
	if code != 0 || lost != 0 || extra != 0 || reported(t, out) != 0 {
		t.Fatalf("exit %d, %d frames lost, %d extra\n%s\n%s", code, lost, extra, out, errOut)
	}
	if n := strings.Count(errOut, "reconnecting"); n < 5 {
		t.Fatalf("%d reconnects reported for 5 kills:\n%s", n, errOut)
	}
	busiest := busiestSecond(t, srv.url, "kill")
	if busiest > 5 {
		t.Fatalf("%d fragments within a second: the service takes 5", busiest)
	}
	recordReliability(reliabilityRow{order: 10, fault: "`kvsgo serve` killed (SIGKILL) and restarted 5 times in a minute",
		happened: fmt.Sprintf("put reconnected each time (%d reconnects) and sent again what was not persisted, at most %d fragments a second; after: %s (before: %s)", int(c.put.metricAfter("kvsgo_put_reconnects")), busiest, after, c.before),
		lost:     "0", dups: extra, recovery: durations(recoveries)})
}

// metricAfter is a metric's last value, read before put ended.
func (p *putProc) metricAfter(name string) float64 {
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	return p.last[name]
}

// TestFaultNetwork: a proxy between put and serve drops every connection
// (and refuses new ones) for 10 s, stalls (reads nothing) for 20 s,
// trickles 1 KiB/s for 20 s, resets every connection three times: put
// gets through each with every frame once.
func TestFaultNetwork(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, fault string
		order       int
		do          func(p *tcpProxy)
	}{
		{"drop", "a proxy drops every connection and refuses new ones for 10 s", 20, func(p *tcpProxy) {
			p.drop()
			time.Sleep(10 * time.Second)
			p.undrop()
		}},
		{"stall", "a proxy stalls: reads nothing, either way, for 20 s", 21, func(p *tcpProxy) {
			p.setStall(true)
			time.Sleep(20 * time.Second)
			p.setStall(false)
		}},
		{"trickle", "a proxy trickles the upload at 1 KiB/s for 20 s", 22, func(p *tcpProxy) {
			p.setTrickle(true)
			time.Sleep(20 * time.Second)
			p.setTrickle(false)
		}},
		{"reset", "a proxy resets (TCP RST) every connection, 3 times 3 s apart", 23, func(p *tcpProxy) {
			for i := range 3 {
				if i > 0 {
					time.Sleep(3 * time.Second)
				}
				p.reset()
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := startServe(t, serveArgs(t.TempDir())...)
			proxy := newTCPProxy(t, srv.url)
			fc := streaming(t, c.name, uniqueClip(t, 60, false), proxy.url)
			before := fc.persisted()
			reconnects := fc.put.metric("kvsgo_put_reconnects")
			c.do(proxy)
			recovery := fc.put.recovery(t, time.Now(), max(before, fc.persisted()))
			// The fault happened, and put met it: a proxy that cut nothing
			// would pass every check below.
			reconnects = fc.put.metric("kvsgo_put_reconnects") - reconnects
			cuts := proxy.cuts()
			if cut := c.name == "drop" || c.name == "reset"; (cut && cuts == 0) || reconnects < 1 {
				t.Fatalf("the proxy cut %d connections; put reconnected %v times during the fault", cuts, reconnects)
			}
			out, errOut, code, lost, extra, after := fc.finish(srv.url)
			if code != 0 || lost != 0 || extra != 0 || reported(t, out) != 0 {
				t.Fatalf("exit %d, %d frames lost, %d extra\n%s\n%s", code, lost, extra, out, errOut)
			}
			rate := ""
			if c.name == "drop" || c.name == "reset" {
				// (A stalled or trickling proxy hands on what it held late,
				// bunched: what arrives then is not put's pace.)
				busiest := busiestSecond(t, srv.url, c.name)
				if busiest > 5 {
					t.Fatalf("%d fragments within a second: the service takes 5", busiest)
				}
				rate = fmt.Sprintf(", at most %d fragments a second", busiest)
			}
			recordReliability(reliabilityRow{order: c.order, fault: c.fault,
				happened: fmt.Sprintf("the proxy cut %d of put's connections; put found the connection stale or lost, reconnected (%d times during the fault, %d in all) and sent again what was not persisted%s; after: %s (before: %s)",
					cuts, int(reconnects), int(fc.put.metricAfter("kvsgo_put_reconnects")), rate, after, fc.before),
				lost: "0", dups: extra, recovery: durations([]time.Duration{recovery}) + " after the fault ended"})
		})
	}
}

// TestFaultAcksLost: the acks of everything put sends are lost for 5 s:
// each fragment has its own deadline, so the connection is found stale and
// what was not acknowledged is sent again (acks lost for some fragments
// while later ones are acknowledged used to leave them unsent for good).
// put is started with kvssink's names, in kvssink's units: the ack
// timeout it reports is --connection-staleness's 2 seconds.
func TestFaultAcksLost(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	proxy := newFaultProxy(t, srv.url)
	src := uniqueClip(t, 30, false)
	c := streamingWith(t, "silent", src, "--stream-name", "silent", "--source", src, "--endpoint", proxy.url,
		"--connection-staleness", "2", "--buffer-duration", "300", "--storage-size", "64", "--framerate", "30")
	before := c.persisted()
	proxy.setRewrite(func([]byte) []byte { return nil })
	time.Sleep(5 * time.Second)
	proxy.setRewrite(nil)
	recovery := c.put.recovery(t, time.Now(), before)
	out, errOut, code, lost, extra, after := c.finish(srv.url)
	if code != 0 || lost != 0 || extra != 0 || !strings.Contains(errOut, "no acknowledgement for 2s") {
		t.Fatalf("exit %d, %d frames lost, %d extra\n%s\n%s", code, lost, extra, out, errOut)
	}
	recordReliability(reliabilityRow{order: 24, fault: "a proxy drops every ack for 5 s",
		happened: fmt.Sprintf("put (started with kvssink's names: --connection-staleness 2) found the connection stale (no ack of a fragment's own within 2 s) and sent again what was not acknowledged; after: %s", after),
		lost:     "0", dups: extra, recovery: durations([]time.Duration{recovery}) + " after the acks came back"})
}

// TestFaultErrorAcks: the service fails fragments with each ErrorId it
// has. Retriable ones (and an unknown one) are sent again, each on a new
// connection: every frame arrives once. Non-retriable ones are dropped,
// said so by name with the fix, and counted: exactly their frames are
// missing, and put exits 1 saying why.
func TestFaultErrorAcks(t *testing.T) {
	t.Parallel()
	retriable := []int{4000, 4003, 5000, 5001, 4999}
	var refused []int
	for id := 4000; id <= 4507; id++ {
		if info := kvs.LookupAckError(id); info.Code != "UNKNOWN_ACK_ERROR" && !info.Retriable {
			refused = append(refused, id)
		}
	}
	for _, c := range []struct {
		name  string
		ids   []int
		order int
	}{{"retriable", retriable, 30}, {"refused", refused, 31}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := startServe(t, serveArgs(t.TempDir())...)
			proxy := newFaultProxy(t, srv.url)
			fail := map[int]int{}
			for i, id := range c.ids {
				fail[3+2*i] = id // every other fragment from the third
			}
			proxy.failFragments(fail)
			src := uniqueClip(t, 2*len(c.ids)+6, false)
			fc := streaming(t, c.name, src, proxy.url)
			out, errOut, code, lost, extra, after := fc.finish(srv.url)
			if n := len(proxy.injectedAcks()); n != len(c.ids) {
				t.Fatalf("%d errors injected, want %d", n, len(c.ids))
			}
			for _, id := range c.ids {
				info := kvs.LookupAckError(id)
				if !strings.Contains(errOut, fmt.Sprintf("error %d %s: %s", id, info.Code, info.Cause)) {
					t.Errorf("error %d not reported by name and cause:\n%s", id, errOut)
				}
			}
			if extra != 0 || !strings.Contains(out, fmt.Sprintf("%d errors", len(c.ids))) {
				t.Fatalf("%d extra frames\n%s\n%s", extra, out, errOut)
			}
			happened := fmt.Sprintf("each fragment sent again on a new connection (%s)", ids(c.ids))
			lostText := "0"
			if c.name == "retriable" {
				if code != 0 || lost != 0 || reported(t, out) != 0 || strings.Count(errOut, "it is sent again") < len(c.ids) {
					t.Fatalf("exit %d, %d frames lost\n%s\n%s", code, lost, out, errOut)
				}
			} else {
				// Each refused fragment is one second: 30 frames.
				want := 30 * len(c.ids)
				if code != 1 || lost != want || reported(t, out) != want ||
					!strings.Contains(out, fmt.Sprintf("frames lost: %d in fragments the service refused", want)) ||
					!strings.Contains(errOut, fmt.Sprintf("the service refused %d fragments", len(c.ids))) {
					t.Fatalf("exit %d, %d frames lost (want %d, exactly the refused fragments')\n%s\n%s", code, lost, want, out, errOut)
				}
				happened = fmt.Sprintf("each refused fragment dropped, named with its cause and fix, its frames counted; put exits 1 (%s)", ids(c.ids))
				lostText = fmt.Sprintf("%d, all reported (the %d refused fragments)", lost, len(c.ids))
			}
			recordReliability(reliabilityRow{order: c.order, fault: fmt.Sprintf("ERROR acks, %s: %d kinds", map[string]string{"retriable": "retriable (and an unknown id)", "refused": "not retriable"}[c.name], len(c.ids)),
				happened: happened + "; after: " + after.String(), lost: lostText, dups: extra, recovery: "–"})
		})
	}
}

func ids(ids []int) string {
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprint(id))
	}
	return strings.Join(s, ", ")
}

// TestFaultProducerClockOff: put's clock is 10 minutes ahead or behind the
// server's. The server refuses the first PutMedia signature as expired;
// put takes the server's time from its Date header, signs with it, and
// says that the video's timestamps are that far off. Every frame arrives.
func TestFaultProducerClockOff(t *testing.T) {
	t.Parallel()
	for i, off := range []string{"10m", "-10m"} {
		t.Run(off, func(t *testing.T) {
			t.Parallel()
			srv := startServe(t, serveArgs(t.TempDir())...)
			src := uniqueClip(t, 10, false)
			start := time.Now()
			p := startPutProc(t, nil, "--stream", "clock", "--source", src, "--endpoint", srv.url, "--clock-offset", off)
			p.waitMetric(t, "kvsgo_put_fragments_persisted", time.Minute, atLeast(1))
			first := time.Since(start)
			out, errOut, code := p.wait(t)
			lost, extra := compareFrames(framesBack(t, srv.url, "clock"), mediatest.FrameMD5(t, src, nil, "h264", "v:0"))
			which := map[string]string{"10m": "ahead of", "-10m": "behind"}[off]
			if code != 0 || lost != 0 || extra != 0 || !strings.Contains(errOut, "this machine's clock is 10m0s "+which+" the service's") {
				t.Fatalf("exit %d, %d lost, %d extra\n%s\n%s", code, lost, extra, out, errOut)
			}
			recordReliability(reliabilityRow{order: 40 + i, fault: "put's clock 10 min " + which + " the server's",
				happened: "the first PutMedia was refused (signature expired); put signed again with the server's time (its Date header) and said the video's timestamps are 10 min off (they come from the camera's clock); the control plane's calls are the AWS SDK's, which corrects its clock the same way",
				lost:     "0", dups: extra, recovery: durations([]time.Duration{first}) + " from start to the first fragment persisted"})
		})
	}
}

// TestFaultSourceStalls: the camera's pipe goes quiet for 15 s in the
// middle of the stream, then goes on: nothing is lost, nothing doubled.
func TestFaultSourceStalls(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	src := uniqueClip(t, 20, false)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	p := startPutProc(t, pr, "--stream", "stall", "--source", "-", "--fps", "30", "--endpoint", srv.url)
	type resume struct {
		at        time.Time
		persisted float64
	}
	resumed := make(chan resume, 1)
	go func() {
		defer pw.Close()
		half := len(data) / 2
		for _, part := range []struct {
			from, to int
			pause    time.Duration
		}{{0, half, 0}, {half, len(data), 15 * time.Second}} {
			if part.pause > 0 {
				time.Sleep(part.pause) // the camera is quiet
				resumed <- resume{time.Now(), p.metric("kvsgo_put_fragments_persisted")}
			}
			// Ten seconds' worth in real time, as a camera sends it.
			chunk := (part.to - part.from) / 100
			for off := part.from; off < part.to; off += chunk {
				if _, err := pw.Write(data[off:min(off+chunk, part.to)]); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	var r resume
	select {
	case r = <-resumed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the source never resumed: %s", p.errOut.String())
	}
	recovery := p.recovery(t, r.at, r.persisted)
	out, errOut, code := p.wait(t)
	lost, extra := compareFrames(framesBack(t, srv.url, "stall"), mediatest.FrameMD5(t, src, nil, "h264", "v:0"))
	if code != 0 || lost != 0 || extra != 0 || reported(t, out) != 0 {
		t.Fatalf("exit %d, %d lost, %d extra\n%s\n%s", code, lost, extra, out, errOut)
	}
	recordReliability(reliabilityRow{order: 50, fault: "the source (a pipe) stalls for 15 s mid-stream",
		happened: fmt.Sprintf("put waited, and went on when the video did (%s)", strings.TrimSpace(summaryReconnects(out))),
		lost:     "0", dups: extra, recovery: durations([]time.Duration{recovery}) + " from the video's return to a fragment persisted"})
}

func summaryReconnects(out string) string {
	for _, f := range strings.Split(out, ", ") {
		if strings.HasSuffix(f, "reconnects") {
			return f
		}
	}
	return "?"
}

// TestFaultSourceEndsMidFrame: the input ends in the middle of a frame (a
// camera pipe cut off). Every whole frame is delivered once; what becomes
// of the cut one is what a player makes of the same input (ffmpeg reads
// it the same way), and put says how the input ended.
func TestFaultSourceEndsMidFrame(t *testing.T) {
	t.Parallel()
	clip := uniqueClip(t, 6, false)
	for i, c := range []struct {
		name   string
		format string
		mux    []string
	}{
		{"annexb", "h264", nil},
		{"matroska", "matroska", []string{"-c", "copy", "-f", "matroska"}},
		{"mpegts", "mpegts", []string{"-c", "copy", "-f", "mpegts"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(clip)
			if err != nil {
				t.Fatal(err)
			}
			if c.mux != nil {
				data = mediatest.Run(t, nil, "ffmpeg", append([]string{"-v", "error", "-f", "h264", "-r", "30", "-i", clip}, append(c.mux, "pipe:1")...)...)
			}
			cut := data[:len(data)-200] // inside the last frame
			in := filepath.Join(t.TempDir(), "cut."+c.name)
			if err := os.WriteFile(in, cut, 0o644); err != nil {
				t.Fatal(err)
			}
			srv := startServe(t, serveArgs(t.TempDir())...)
			p := startPutProc(t, bytes.NewReader(cut), "--stream", "cut", "--source", "-", "--endpoint", srv.url)
			out, errOut, code := p.wait(t)
			want := mediatest.FrameMD5(t, in, nil, c.format, "v:0")
			back := framesBack(t, srv.url, "cut")
			lost, extra := compareFrames(back, want)
			if lost != 0 || extra != 0 {
				t.Fatalf("%d frames back, ffmpeg reads %d from the cut input (%d lost, %d extra)\n%s\n%s", len(back), len(want), lost, extra, out, errOut)
			}
			how := "exit 0"
			if code != 0 {
				how = fmt.Sprintf("exit %d: %q", code, lastLine(errOut))
			}
			recordReliability(reliabilityRow{order: 60 + i, fault: "the source ends mid-frame: " + c.name + " on stdin, cut 200 bytes before its end",
				happened: fmt.Sprintf("%d frames delivered, as many as ffmpeg reads from the same input; %s", len(back), how),
				lost:     "0", dups: extra, recovery: "–"})
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestPutWithNoServer(t *testing.T) {
	t.Parallel()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	start := time.Now()
	out, errOut, code := startPut(t, "--stream", "none", "--source", mediatest.Fixture(t, "h264-baseline.h264"),
		"--endpoint", endpoint, "--give-up-after", "3s")()
	if code == 0 || !strings.Contains(errOut, "cannot reach Kinesis Video Streams") || !strings.Contains(errOut, "giving up") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	// Every frame it held is counted lost, and why: none is silently gone.
	sum := parseSummary(t, out)
	if sum.frames == 0 || sum.lost != sum.frames || !strings.Contains(out, fmt.Sprintf("frames lost: %d not acknowledged by the service", sum.frames)) {
		t.Fatalf("the frames never delivered are not counted lost:\n%s", out)
	}
	if time.Since(start) > time.Minute {
		t.Fatalf("took %s to give up", time.Since(start))
	}
}

func TestPutWithBadCredentials(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	out, errOut, code := startPut(t, "--stream", "creds", "--source", mediatest.Fixture(t, "h264-baseline.h264"),
		"--endpoint", srv.url, "--access-key", creds.AccessKeyID, "--secret-key", "wrong")()
	if code == 0 || !strings.Contains(errOut, "credentials refused") || strings.Contains(errOut, "retrying") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}
