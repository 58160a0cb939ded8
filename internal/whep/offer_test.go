package whep

import "testing"

// offer is a browser's receive-only video offer with the given rtpmaps.
func offer(rtpmaps string) string {
	return "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 98\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=mid:0\r\na=recvonly\r\na=rtcp-mux\r\n" + rtpmaps
}

// Chrome with hardware HEVC decoding offers H265 beside H264; Chromium
// without it offers H264 only. An m=audio line's codecs do not count.
func TestOffersH265(t *testing.T) {
	for _, tc := range []struct {
		name, sdp string
		want      bool
	}{
		{"H.265 and H.264", offer("a=rtpmap:96 H264/90000\r\na=rtpmap:98 H265/90000\r\na=fmtp:98 level-id=180;profile-id=1;tier-flag=0;tx-mode=SRST\r\n"), true},
		{"lower case", offer("a=rtpmap:98 h265/90000\r\n"), true},
		{"H.264 only", offer("a=rtpmap:96 H264/90000\r\na=rtpmap:98 VP8/90000\r\n"), false},
		{"H.265 in an audio section", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 98\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:98 H265/90000\r\n", false},
	} {
		got, err := offersH265(tc.sdp)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := offersH265("not SDP"); err == nil {
		t.Error("an offer that is not SDP passes")
	}
}

// FuzzOffersH265: whatever the offer, the check neither panics nor hangs.
func FuzzOffersH265(f *testing.F) {
	f.Add(offer("a=rtpmap:98 H265/90000\r\n"))
	f.Add(offer("a=rtpmap:98\r\na=rtpmap: \r\n"))
	f.Add("v=0\r\nm=video")
	f.Fuzz(func(t *testing.T, sdp string) {
		_, _ = offersH265(sdp)
	})
}
