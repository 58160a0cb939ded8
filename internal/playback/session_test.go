package playback

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
)

func testSession() Session {
	return Session{Kind: KindHLS, Stream: "porch@1700000000000", Mode: ModeLiveReplay,
		ProducerTime: true, Start: epoch, End: epoch.Add(time.Hour), TS: true, Discontinuity: DiscontinuityOnGap,
		DisplayTimestamp: true, MaxResults: 7, Created: epoch, Expires: epoch.Add(300 * time.Second), Origin: 42}
}

func TestSessionTokenRoundTrip(t *testing.T) {
	s, _ := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	want := testSession()
	got, id, err := s.Parse(s.Token(want), epoch.Add(time.Minute))
	if err != nil || id == "" {
		t.Fatal(err)
	}
	if got.Stream != want.Stream || got.Mode != want.Mode || !got.ProducerTime || !got.TS ||
		!got.DisplayTimestamp || got.Discontinuity != want.Discontinuity || got.MaxResults != 7 || got.Origin != 42 ||
		!got.Start.Equal(want.Start) || !got.End.Equal(want.End) || !got.Expires.Equal(want.Expires) || got.Kind != KindHLS {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
}

// TestSessionTokenRefused: a token changed anywhere, signed with another
// key, or used after it expires is refused.
func TestSessionTokenRefused(t *testing.T) {
	s, _ := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	other, _ := NewSigner([]byte("fedcba9876543210fedcba9876543210"))
	tok := s.Token(testSession())
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range raw {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		if _, _, err := s.Parse(base64.RawURLEncoding.EncodeToString(b), epoch); !errors.Is(err, ErrTokenInvalid) {
			t.Fatalf("a token with byte %d changed: %v", i, err)
		}
	}
	// Every character changed, the last one's unused low bits included
	// (tokens of every length modulo 4, so some have such bits).
	for _, id := range []store.StreamID{"p@1", "po@1", "por@1", "porc@1"} {
		sess := testSession()
		sess.Stream = id
		tok := s.Token(sess)
		for i := range tok {
			for _, c := range []byte("ABab09-_") {
				if tok[i] == c {
					continue
				}
				changed := tok[:i] + string(c) + tok[i+1:]
				if _, _, err := s.Parse(changed, epoch); !errors.Is(err, ErrTokenInvalid) {
					t.Fatalf("a token of length %d with character %d changed to %q: %v", len(tok), i, c, err)
				}
			}
		}
	}
	if _, _, err := other.Parse(tok, epoch); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("another server's token: %v", err)
	}
	if _, _, err := s.Parse(tok, epoch.Add(300*time.Second)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("an expired token: %v", err)
	}
	for _, bad := range []string{"", "!!!", "AAAA"} {
		if _, _, err := s.Parse(bad, epoch); !errors.Is(err, ErrTokenInvalid) {
			t.Fatalf("token %q: %v", bad, err)
		}
	}
	// A token this server signed in version 1's format (stream name and
	// ARN) is told apart from a forged one.
	v1 := append([]byte{1}, raw[1:len(raw)-macSize]...)
	v1 = append(v1, s.mac(v1)...)
	if _, _, err := s.Parse(base64.RawURLEncoding.EncodeToString(v1), epoch); !errors.Is(err, ErrTokenVersion) {
		t.Fatalf("a version 1 token: %v", err)
	}
}

// FuzzSessionToken: whatever a client sends as a token, Parse refuses or
// returns a session, never panics; decoding any signed body either fails
// or round-trips.
func FuzzSessionToken(f *testing.F) {
	s, _ := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	tok := s.Token(testSession())
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	f.Add(raw[:len(raw)-macSize])
	f.Add([]byte{2, 1, 1, 0, 1, 5, 0, 0, 2, 2, 0, 1, 'a'})
	f.Add([]byte{1, 1, 1, 0, 1, 5, 0, 0, 2, 2, 0, 1, 'a', 0}) // version 1
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _, _ = s.Parse(base64.RawURLEncoding.EncodeToString(body), epoch)
		signed := append(append([]byte(nil), body...), s.mac(body)...)
		sess, _, err := s.Parse(base64.RawURLEncoding.EncodeToString(signed), time.Unix(0, 0))
		if err != nil {
			return
		}
		again, _, err := s.Parse(s.Token(sess), time.Unix(0, 0))
		if err != nil || again.Stream != sess.Stream || again.Origin != sess.Origin || !again.Expires.Equal(sess.Expires) {
			t.Fatalf("a decoded session does not round-trip: %+v / %+v %v", sess, again, err)
		}
	})
}
