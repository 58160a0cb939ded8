package source

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Camera holds the encoder settings kvsgo's flags map onto camera
// programs. Zero values take the defaults.
type Camera struct {
	Width, Height int     // 1280x720
	FPS           float64 // 30
	Bitrate       int     // bits per second; 2 Mbit/s
	// KeyInt is the key-frame interval in frames; one second's worth by
	// default, which gives 1 s fragments and the lowest playback latency.
	KeyInt  int
	Profile string // baseline
	// LowLatency asks rpicam-vid for --low-latency; by default it is used
	// on a Raspberry Pi 5, whose software encoder it applies to.
	LowLatency *bool
}

func (c Camera) withDefaults() Camera {
	if c.Width == 0 || c.Height == 0 {
		c.Width, c.Height = 1280, 720
	}
	if c.FPS == 0 {
		c.FPS = 30
	}
	if c.Bitrate == 0 {
		c.Bitrate = 2_000_000
	}
	if c.KeyInt == 0 {
		c.KeyInt = int(c.FPS + 0.5)
	}
	if c.Profile == "" {
		c.Profile = "baseline"
	}
	return c
}

func fmtFPS(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// RPiCam runs rpicam-vid (or, on older systems, libcamera-vid) and streams
// its H.264. Its output carries no timestamps: frames are timed as they
// arrive.
func RPiCam(c Camera, opts Options, deviceModel string) *Process {
	c = c.withDefaults()
	args := []string{"-t", "0", "-n", "--inline", "--codec", "h264", "-o", "-",
		"--width", strconv.Itoa(c.Width), "--height", strconv.Itoa(c.Height), "--framerate", fmtFPS(c.FPS),
		"--bitrate", strconv.Itoa(c.Bitrate), "--intra", strconv.Itoa(c.KeyInt), "--profile", c.Profile}
	low := strings.Contains(deviceModel, "Raspberry Pi 5")
	if c.LowLatency != nil {
		low = *c.LowLatency
	}
	if low {
		args = append(args, "--low-latency")
	}
	return &Process{Name: "rpicam", Argv: append([]string{"rpicam-vid"}, args...),
		Fallbacks:   [][]string{append([]string{"libcamera-vid"}, args...)},
		InstallHint: "sudo apt install rpicam-apps", Restart: true, ArrivalTime: true, Now: opts.Now, Logger: opts.Logger}
}

// DeviceModel reads the board's model (e.g. "Raspberry Pi 5 Model B"), or
// "" when it is not a device-tree board.
func DeviceModel() string {
	b, err := os.ReadFile("/proc/device-tree/model")
	if err != nil {
		return ""
	}
	return string(bytes.TrimRight(b, "\x00\n"))
}

var v4l2H264 = regexp.MustCompile(`(?m)Compressed:\s+h264\b`)

// V4L2 streams a webcam: its own H.264 passed through when it has one,
// otherwise encoded by ffmpeg (or gst-launch-1.0) with a zero-latency preset
// and a key frame every second. ffmpeg's Matroska output keeps the frames'
// capture times.
func V4L2(ctx context.Context, device string, c Camera, opts Options) (*Process, error) {
	c = c.withDefaults()
	size := fmt.Sprintf("%dx%d", c.Width, c.Height)
	keyint := strconv.Itoa(c.KeyInt)
	base := Process{Name: "v4l2", Restart: true, Now: opts.Now, Logger: opts.Logger}
	if _, err := exec.LookPath("ffmpeg"); err == nil {
		in := []string{"ffmpeg", "-hide_banner", "-loglevel", "warning", "-f", "v4l2", "-framerate", fmtFPS(c.FPS), "-video_size", size}
		p := base
		if hasH264(ctx, device) {
			p.Argv = append(append(in, "-input_format", "h264", "-i", device), "-c:v", "copy", "-f", "matroska", "-")
		} else {
			p.Argv = append(append(in, "-i", device), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
				"-g", keyint, "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", strconv.Itoa(c.Bitrate), "-f", "matroska", "-")
		}
		return &p, nil
	}
	if _, err := exec.LookPath("gst-launch-1.0"); err == nil {
		p := base
		p.Argv = []string{"gst-launch-1.0", "-q", "-e", "v4l2src", "device=" + device, "!",
			fmt.Sprintf("video/x-raw,width=%d,height=%d,framerate=%s/1", c.Width, c.Height, fmtFPS(c.FPS)), "!",
			"videoconvert", "!", "x264enc", "tune=zerolatency", "speed-preset=ultrafast", "key-int-max=" + keyint, "bframes=0",
			"bitrate=" + strconv.Itoa(c.Bitrate/1000), "!", "h264parse", "!", "matroskamux", "streamable=true", "!", "fdsink", "fd=1"}
		return &p, nil
	}
	return nil, fmt.Errorf("ffmpeg or gst-launch-1.0 %w: sudo apt install ffmpeg", ErrNotInstalled)
}

// hasH264 asks ffmpeg whether the device can deliver H.264 itself.
func hasH264(ctx context.Context, device string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-f", "v4l2", "-list_formats", "all", "-i", device).CombinedOutput()
	return v4l2H264.Match(out)
}

// kvssinkTail matches a pasted `! kvssink …` at the end of a pipeline.
var kvssinkTail = regexp.MustCompile(`!\s*kvssink(\s.*)?$`)

// GStreamer runs a gst-launch-1.0 pipeline as people write it for kvssink,
// caps and all, up to (or including: it is dropped) kvssink, and appends a
// parser and matroskamux so that timestamps are kept.
func GStreamer(pipeline string, opts Options) *Process {
	p := strings.TrimSpace(kvssinkTail.ReplaceAllString(strings.TrimSpace(pipeline), ""))
	p = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(p), "!"))
	parser := "h264parse"
	lower := strings.ToLower(p)
	if strings.Contains(lower, "h265") || strings.Contains(lower, "x265") || strings.Contains(lower, "hevc") {
		parser = "h265parse"
	}
	full := p + " ! " + parser + " ! matroskamux streamable=true ! fdsink fd=1"
	// gst-launch-1.0 takes the pipeline as the words a shell would pass it.
	return &Process{Name: "gst", Argv: append([]string{"gst-launch-1.0", "-q", "-e"}, shellWords(full)...),
		InstallHint:      "sudo apt install gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly",
		RestartOnFailure: true, Now: opts.Now, Logger: opts.Logger}
}

// Exec runs any command (through sh) whose standard output is Annex-B,
// Matroska or MPEG-TS.
func Exec(command string, opts Options) *Process {
	return &Process{Name: "exec", Argv: []string{"sh", "-c", command}, FPS: opts.FPS, RestartOnFailure: true, Now: opts.Now, Logger: opts.Logger}
}

// shellWords splits s into words as sh would: on blanks, with single and
// double quotes grouping and removed, and backslash escaping in and out of
// double quotes.
func shellWords(s string) []string {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word is under way
		quote rune
	)
	runes := []rune(s)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\' && i+1 < len(runes) && quote != '\'':
			i++
			cur.WriteRune(runes[i])
			in = true
		case quote == '"':
			if r == '"' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
