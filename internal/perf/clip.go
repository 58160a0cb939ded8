package perf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ClipSpec describes a test clip: H.264 from x264 at a constant bit rate,
// a key frame every second (so every fragment is 1 s), no B-frames (as
// cameras send), ffmpeg's moving testsrc2 pattern.
type ClipSpec struct {
	Width, Height int
	FPS           int
	Bitrate       int // bits per second
	Seconds       int
}

// Name is how the clip is called in tables and file names, e.g.
// "1080p30 4 Mbit/s".
func (c ClipSpec) Name() string {
	return fmt.Sprintf("%dp%d %s", c.Height, c.FPS, rate(c.Bitrate))
}

func (c ClipSpec) file() string {
	return fmt.Sprintf("%dx%d-%dfps-%dbps-%ds", c.Width, c.Height, c.FPS, c.Bitrate, c.Seconds)
}

func rate(bps int) string {
	if bps%1_000_000 == 0 {
		return fmt.Sprintf("%d Mbit/s", bps/1_000_000)
	}
	return fmt.Sprintf("%g Mbit/s", float64(bps)/1e6)
}

// Clip is one clip in the three containers kvsgo put reads from files.
type Clip struct {
	Spec   ClipSpec
	MKV    string
	AnnexB string
	MP4    string
}

// Inputs lists the clip's files with the name of their format.
func (c Clip) Inputs() []Input {
	return []Input{{"Annex-B", c.AnnexB}, {"Matroska", c.MKV}, {"MP4", c.MP4}}
}

// Input is a clip in one container.
type Input struct{ Format, Path string }

// MakeClip encodes the clip with ffmpeg into dir, once: a clip already
// there is reused. The Matroska file is encoded; the Annex-B and MP4 files
// are copies of its stream, so all three hold the same frames.
func MakeClip(ctx context.Context, dir string, spec ClipSpec) (Clip, error) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return Clip{}, fmt.Errorf("making test clips needs ffmpeg with libx264 (apt-get install ffmpeg): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Clip{}, err
	}
	base := filepath.Join(dir, spec.file())
	c := Clip{Spec: spec, MKV: base + ".mkv", AnnexB: base + ".h264", MP4: base + ".mp4"}
	g := fmt.Sprint(spec.FPS)
	b := fmt.Sprint(spec.Bitrate)
	steps := []struct {
		out  string
		args []string
	}{
		{c.MKV, []string{"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", spec.Width, spec.Height, spec.FPS),
			"-t", fmt.Sprint(spec.Seconds), "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
			"-g", g, "-keyint_min", g, "-sc_threshold", "0", "-bf", "0", "-b:v", b, "-maxrate", b, "-bufsize", b, "-f", "matroska"}},
		{c.AnnexB, []string{"-i", c.MKV, "-c:v", "copy", "-f", "h264"}},
		{c.MP4, []string{"-i", c.MKV, "-c:v", "copy", "-movflags", "+faststart", "-f", "mp4"}},
	}
	for _, s := range steps {
		if _, err := os.Stat(s.out); err == nil {
			continue
		}
		tmp := s.out + ".part"
		args := append(append([]string{"-hide_banner", "-loglevel", "error", "-y"}, s.args...), tmp)
		if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
			_ = os.Remove(tmp)
			return Clip{}, fmt.Errorf("ffmpeg making %s: %w\n%s", s.out, err, out)
		}
		if err := os.Rename(tmp, s.out); err != nil {
			return Clip{}, err
		}
	}
	return c, nil
}

// CacheDir is where clips are kept between runs.
func CacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "kvsgo-bench")
}
