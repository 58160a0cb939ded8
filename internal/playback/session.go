package playback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
)

// Kind says which protocol a session serves.
type Kind uint8

// Session kinds.
const (
	KindHLS Kind = iota + 1
	KindDASH
)

// Mode is a session's PlaybackMode.
type Mode uint8

// Playback modes.
const (
	ModeLive Mode = iota + 1
	ModeLiveReplay
	ModeOnDemand
)

var modeNames = map[Mode]string{ModeLive: "LIVE", ModeLiveReplay: "LIVE_REPLAY", ModeOnDemand: "ON_DEMAND"}

func (m Mode) String() string { return modeNames[m] }

// ParseMode reads a PlaybackMode name.
func ParseMode(s string) (Mode, bool) {
	for m, n := range modeNames {
		if n == s {
			return m, true
		}
	}
	return 0, false
}

// Discontinuity is a session's DiscontinuityMode.
type Discontinuity uint8

// Discontinuity modes.
const (
	DiscontinuityAlways Discontinuity = iota + 1
	DiscontinuityNever
	DiscontinuityOnGap
)

// Session is what a session token carries: everything a player's later
// requests need, so that the server keeps no per-session state that
// matters (a restart keeps sessions working).
type Session struct {
	Kind Kind
	// Stream is the stream's identity, not its name: a stream deleted and
	// created again under the same name is another stream, and a session
	// of the old one never reads the new one's fragments.
	Stream store.StreamID
	Mode   Mode
	// ProducerTime selects and places fragments by producer timestamps,
	// else by server timestamps.
	ProducerTime bool
	// Start and End bound the fragments' start times (zero: open).
	Start, End time.Time
	// TS: MPEG-TS segments (HLS only), else fragmented MP4.
	TS            bool
	Discontinuity Discontinuity
	// DisplayTimestamp puts EXT-X-PROGRAM-DATE-TIME in HLS playlists.
	DisplayTimestamp bool
	MaxResults       int
	Created, Expires time.Time
	// Origin is the sequence number of a LIVE session's first fragment:
	// media sequence numbers count from it.
	Origin uint64
}

// Token errors; all mean HTTP 403.
var (
	ErrTokenInvalid = errors.New("the session token is not valid")
	ErrTokenExpired = errors.New("the session has expired")
	// ErrTokenVersion: a token this server signed in another format (an
	// older kvsgo's, which named streams by name): a new session is needed.
	ErrTokenVersion = errors.New("the session token is from another version of kvsgo serve")
)

// Signer issues and checks session tokens: the session's fields and an
// HMAC-SHA256 over them with the server's secret, base64url. A token cannot
// be forged or altered without the secret; it is not encrypted (it names
// the stream), so it must be kept like a credential, as the service's are.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer with a secret of at least 32 bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("playback: a session secret needs at least 32 bytes, got %d", len(key))
	}
	return &Signer{key: key}, nil
}

const (
	// tokenVersion 2 names the stream by its identity (version 1 named
	// it by name and ARN).
	tokenVersion = 2
	macSize      = sha256.Size
)

// Token flag bits.
const (
	flagProducer = 1 << iota
	flagTS
	flagDisplay
	flagStart
	flagEnd
)

// maxTokenLen bounds what Parse decodes; real tokens are a few hundred
// bytes.
const maxTokenLen = 4096

// Token returns the signed token of a session.
func (s *Signer) Token(sess Session) string {
	b := []byte{tokenVersion, byte(sess.Kind), byte(sess.Mode), 0, byte(sess.Discontinuity)}
	var flags byte
	if sess.ProducerTime {
		flags |= flagProducer
	}
	if sess.TS {
		flags |= flagTS
	}
	if sess.DisplayTimestamp {
		flags |= flagDisplay
	}
	if !sess.Start.IsZero() {
		flags |= flagStart
	}
	if !sess.End.IsZero() {
		flags |= flagEnd
	}
	b[3] = flags
	b = binary.AppendUvarint(b, uint64(sess.MaxResults))
	for _, t := range []time.Time{sess.Start, sess.End, sess.Created, sess.Expires} {
		b = binary.AppendVarint(b, msOf(t))
	}
	b = binary.AppendUvarint(b, sess.Origin)
	b = binary.AppendUvarint(b, uint64(len(sess.Stream)))
	b = append(b, sess.Stream...)
	b = append(b, s.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func msOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func (s *Signer) mac(b []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(b)
	return m.Sum(nil)
}

// Parse checks a token's signature and expiry at now and returns its
// session, and an ID that names the session (for caches).
func (s *Signer) Parse(token string, now time.Time) (Session, string, error) {
	var sess Session
	if len(token) == 0 || len(token) > maxTokenLen {
		return sess, "", ErrTokenInvalid
	}
	// Strict: the unused low bits of the last character must be zero, so
	// that one token has one spelling and a changed character is refused.
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) < macSize+5 {
		return sess, "", ErrTokenInvalid
	}
	body, mac := b[:len(b)-macSize], b[len(b)-macSize:]
	if !hmac.Equal(mac, s.mac(body)) {
		return sess, "", ErrTokenInvalid
	}
	// Signed by this server: what follows was written by Token, but is
	// still read defensively.
	if body[0] != tokenVersion {
		return Session{}, "", ErrTokenVersion
	}
	sess, err = decodeSession(body)
	if err != nil {
		return Session{}, "", ErrTokenInvalid
	}
	if !now.Before(sess.Expires) {
		return Session{}, "", ErrTokenExpired
	}
	return sess, string(mac[:16]), nil
}

func decodeSession(b []byte) (Session, error) {
	var sess Session
	if b[0] != tokenVersion {
		return sess, errors.New("version")
	}
	sess.Kind, sess.Mode, sess.Discontinuity = Kind(b[1]), Mode(b[2]), Discontinuity(b[4])
	flags := b[3]
	sess.ProducerTime = flags&flagProducer != 0
	sess.TS = flags&flagTS != 0
	sess.DisplayTimestamp = flags&flagDisplay != 0
	r := b[5:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	nextSigned := func() (int64, bool) {
		v, n := binary.Varint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	mr, ok := next()
	if !ok || mr > 1<<20 {
		return sess, errors.New("max results")
	}
	sess.MaxResults = int(mr)
	var ms [4]int64
	for i := range ms {
		if ms[i], ok = nextSigned(); !ok {
			return sess, errors.New("times")
		}
	}
	if flags&flagStart != 0 {
		sess.Start = time.UnixMilli(ms[0]).UTC()
	}
	if flags&flagEnd != 0 {
		sess.End = time.UnixMilli(ms[1]).UTC()
	}
	sess.Created, sess.Expires = time.UnixMilli(ms[2]).UTC(), time.UnixMilli(ms[3]).UTC()
	if sess.Origin, ok = next(); !ok {
		return sess, errors.New("origin")
	}
	n, ok := next()
	if !ok || n > uint64(len(r)) {
		return sess, errors.New("string")
	}
	sess.Stream, r = store.StreamID(r[:n]), r[n:]
	if len(r) != 0 || sess.Kind < KindHLS || sess.Kind > KindDASH || sess.Mode < ModeLive || sess.Mode > ModeOnDemand ||
		sess.Discontinuity < DiscontinuityAlways || sess.Discontinuity > DiscontinuityOnGap {
		return sess, errors.New("fields")
	}
	return sess, nil
}
