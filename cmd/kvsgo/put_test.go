package main

import (
	"strings"
	"testing"

	"github.com/kvsgo/kvsgo/internal/source"
	"github.com/kvsgo/kvsgo/kvs"
)

// TestExitStatusRule: put fails for every loss but the user's own buffer
// limits; for a live source, the pictures before its first key frame (of
// each connection) are counted but do not fail it.
func TestExitStatusRule(t *testing.T) {
	for _, c := range []struct {
		name   string
		lost   kvs.Losses
		live   bool
		fails  bool
		advice string
	}{
		{"nothing lost", kvs.Losses{}, false, false, ""},
		{"overflow is the user's choice", kvs.Losses{Overflow: 30}, false, false, ""},
		{"a file that starts mid-GOP", kvs.Losses{BeforeKeyFrame: 12}, false, true, "start the source at a key frame"},
		{"a camera that starts mid-GOP", kvs.Losses{BeforeKeyFrame: 12}, true, false, ""},
		{"a camera with damaged input", kvs.Losses{BeforeKeyFrame: 12, Damaged: 1}, true, true, "packets missing"},
		{"a cut MP4", kvs.Losses{Undecodable: 5}, false, true, "cut MP4s at a key frame"},
		{"a jump back mid-GOP", kvs.Losses{Discontinuity: 20, Overflow: 3}, false, true, "join clips at key frames"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if fails := failingLosses(c.lost, c.live) > 0; fails != c.fails {
				t.Fatalf("fails %v, want %v", fails, c.fails)
			}
			if !c.fails {
				return
			}
			msg := lostError(c.lost, c.live).Error()
			if !strings.Contains(msg, c.advice) || !strings.Contains(msg, c.lost.String()) ||
				c.live && strings.Contains(msg, "start the source at a key frame") {
				t.Fatalf("the error says %q", msg)
			}
		})
	}
}

// TestLiveSources: cameras and programs are live; files, stdin and the
// test clip are not.
func TestLiveSources(t *testing.T) {
	for spec, live := range map[string]bool{"rpicam": true, "v4l2:/dev/video0": true, "rtsp://u:p@cam/s": true, "rtsps://cam/s": true,
		"gst:videotestsrc ! x264enc": true, "exec:ffmpeg -i x -f mpegts -": true, "-": false, "testsrc": false, "clip.ts": false} {
		if source.Live(spec) != live {
			t.Errorf("Live(%q) = %v", spec, !live)
		}
	}
}
