package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/mkv"
	"github.com/kvsgo/kvsgo/web"
)

// HLSSessions creates HLS playback sessions for the page, without a SigV4
// request: the page's own login stands for the caller. mode is LIVE,
// LIVE_REPLAY or ON_DEMAND; start and end (producer timestamps) bound the
// replay modes. It returns the session's master playlist URL.
type HLSSessions interface {
	NewSession(ctx context.Context, stream, mode string, start, end time.Time) (string, error)
}

// Clips writes an MP4 clip of a producer-time range (GetClip) for the
// page. It writes nothing when it fails.
type Clips interface {
	WriteClip(ctx context.Context, w io.Writer, stream string, start, end time.Time) error
}

// UIConfig configures the page at / and its /ui/ routes.
type UIConfig struct {
	// HLS and Clips play and cut video; the server's own HLS sessions
	// (Server.NewSession) and GetClip (Server.WriteClip) when nil.
	HLS   HLSSessions
	Clips Clips
	// SessionTTL is how long a login lasts; 12 h when zero.
	SessionTTL time.Duration
}

// ui serves the page. With Config.Credentials set, everything but the
// login form and the static files needs a session cookie signed with a
// per-server key.
type ui struct {
	s      *Server
	cfg    UIConfig
	files  fs.FS
	key    []byte
	static http.Handler

	mu    sync.Mutex
	video map[store.StreamID]videoInfo // per stream identity, from the header of its newest fragment
}

type videoInfo struct {
	segment uint32
	offset  int64
	text    string
}

const sessionCookie = "kvsgo_session"

func (s *Server) registerUI() {
	u := &ui{s: s, cfg: s.cfg.UI, files: web.Files(), key: make([]byte, 32), video: map[store.StreamID]videoInfo{}}
	_, _ = rand.Read(u.key)
	if u.cfg.SessionTTL == 0 {
		u.cfg.SessionTTL = 12 * time.Hour
	}
	if u.cfg.HLS == nil {
		u.cfg.HLS = s
	}
	if u.cfg.Clips == nil {
		u.cfg.Clips = s
	}
	u.static = http.StripPrefix("/ui/static/", http.FileServerFS(u.files))
	s.mux.HandleFunc("GET /{$}", u.page)
	s.mux.Handle("GET /ui/static/", u.static)
	s.mux.HandleFunc("GET /ui/login", u.loginPage)
	s.mux.HandleFunc("POST /ui/login", u.login)
	s.mux.HandleFunc("POST /ui/logout", u.logout)
	s.mux.Handle("GET /ui/api/streams", u.api(u.streams))
	s.mux.Handle("GET /ui/api/streams/{name}/timeline", u.api(u.timeline))
	s.mux.Handle("POST /ui/api/streams/{name}/hls", u.api(u.hls))
	s.mux.Handle("GET /ui/api/streams/{name}/clip", u.api(u.clip))
	s.registerWHEP(u)
}

// open reports whether the page needs no login: the server takes any
// signature, so a login would guard nothing.
func (u *ui) open() bool { return len(u.s.cfg.Credentials) == 0 }

func (u *ui) page(w http.ResponseWriter, r *http.Request) {
	if !u.open() && !u.authorized(r) {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	u.serveFile(w, r, "index.html")
}

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	if u.open() {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	u.serveFile(w, r, "login.html")
}

func (u *ui) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	b, err := fs.ReadFile(u.files, name)
	if err != nil {
		http.Error(w, "the page is missing from this build", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// login checks the access key and secret against the server's credentials
// and sets a signed, HttpOnly session cookie.
func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "unreadable form", http.StatusBadRequest)
		return
	}
	id, secret := strings.TrimSpace(r.PostForm.Get("access_key")), r.PostForm.Get("secret_key")
	want, known := u.s.cfg.Credentials[id]
	// Compare even for an unknown key, so that timing does not tell keys apart.
	ok := subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1 && known && secret != ""
	if !ok {
		u.s.log.Warn("page login refused", "remote", r.RemoteAddr, "access_key", id)
		http.Redirect(w, r, "/ui/login?failed=1", http.StatusSeeOther)
		return
	}
	exp := u.s.cfg.Now().Add(u.cfg.SessionTTL)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: u.sign(id, exp), Path: "/", Expires: exp,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	u.s.log.Info("page login", "remote", r.RemoteAddr, "access_key", id)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// sign makes a cookie value: key ID, expiry, and an HMAC of both.
func (u *ui) sign(id string, exp time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(id)) + "." + strconv.FormatInt(exp.Unix(), 10)
	m := hmac.New(sha256.New, u.key)
	m.Write([]byte(payload))
	return payload + "." + hex.EncodeToString(m.Sum(nil))
}

// authorized checks the session cookie: a valid signature, not expired,
// and a key the server still accepts.
func (u *ui) authorized(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	payload, mac, ok := cutLast(c.Value, ".")
	if !ok {
		return false
	}
	m := hmac.New(sha256.New, u.key)
	m.Write([]byte(payload))
	got, err := hex.DecodeString(mac)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return false
	}
	enc, expS, ok := strings.Cut(payload, ".")
	id, err1 := base64.RawURLEncoding.DecodeString(enc)
	exp, err2 := strconv.ParseInt(expS, 10, 64)
	if !ok || err1 != nil || err2 != nil || u.s.cfg.Now().Unix() >= exp {
		return false
	}
	_, known := u.s.cfg.Credentials[string(id)]
	return known
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// sameOrigin refuses requests a browser sends from another site: the
// session cookie is SameSite=Strict already; this covers logins.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// uiError is a failure the page shows as it is: a status and plain words.
type uiError struct {
	status int
	msg    string
}

func (e *uiError) Error() string { return e.msg }

func uiErrorf(status int, format string, args ...any) error {
	return &uiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// api wraps a /ui/api/ handler: the session check, JSON out, errors as
// plain text.
func (u *ui) api(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !u.open() && !u.authorized(r) {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && !sameOrigin(r) {
			http.Error(w, "cross-site request refused", http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		out, err := h(w, r)
		if err != nil {
			var ue *uiError
			switch {
			case errors.As(err, &ue):
				http.Error(w, ue.msg, ue.status)
			case errors.Is(err, store.ErrStreamNotFound):
				http.Error(w, "no such stream", http.StatusNotFound)
			default:
				u.s.log.Error("page request failed", "path", r.URL.Path, "error", err)
				http.Error(w, "internal error: "+err.Error(), http.StatusInternalServerError)
			}
			return
		}
		if out != nil {
			writeJSON(w, out)
		}
	})
}

// streamState is one stream as the page shows it.
type streamState struct {
	Name              string `json:"name"`
	Status            string `json:"status"`
	Live              bool   `json:"live"`
	BitrateBPS        int64  `json:"bitrate"`
	LastFragmentAgeMS *int64 `json:"lastFragmentAgeMs"`
	FirstMS           int64  `json:"firstMs,omitempty"`
	LastMS            int64  `json:"lastMs,omitempty"`
	RetentionHours    int    `json:"retentionHours"`
	Video             string `json:"video,omitempty"`
	CreationMS        int64  `json:"creationMs"`
	// NoWebRTC says why the stream cannot be watched live over WebRTC;
	// empty when it can (whep.go).
	NoWebRTC string `json:"noWebRTC,omitempty"`
}

// recentFragments is how many of a stream's newest fragments its bitrate
// is measured over.
const recentFragments = 10

func (u *ui) streams(_ http.ResponseWriter, r *http.Request) (any, error) {
	now := u.s.cfg.Now()
	out := struct {
		Auth     bool          `json:"auth"`
		Now      int64         `json:"now"`
		Endpoint string        `json:"endpoint"`
		Streams  []streamState `json:"streams"`
	}{Auth: !u.open(), Now: now.UnixMilli(), Endpoint: u.s.baseURL(r), Streams: []streamState{}}
	after := ""
	for {
		list, more, err := u.s.store.ListStreams("", after, 100)
		if err != nil {
			return nil, err
		}
		for _, st := range list {
			out.Streams = append(out.Streams, u.state(st, now))
			after = st.Name
		}
		if !more {
			break
		}
	}
	return out, nil
}

func (u *ui) state(st store.Stream, now time.Time) streamState {
	ss := streamState{Name: st.Name, Status: st.Status, RetentionHours: st.RetentionHours, CreationMS: st.CreationTime.UnixMilli()}
	if p, err := u.s.store.Producer(st.ID); err == nil {
		ss.Live = p.Connected
	}
	if err := u.s.live.Status(st.Name); err != nil {
		ss.NoWebRTC = err.Error()
	}
	recent, err := u.s.store.Recent(st.ID, recentFragments)
	if err != nil || len(recent) == 0 {
		return ss
	}
	last := recent[len(recent)-1]
	age := max(now.UnixMilli()-(last.ServerMS+last.DurationMS), 0)
	ss.LastFragmentAgeMS = &age
	ss.LastMS = last.ProducerMS + last.DurationMS
	var bytes, ms int64
	for _, f := range recent {
		bytes += f.BodyLen
		ms += f.DurationMS
	}
	if ms > 0 {
		ss.BitrateBPS = bytes * 8 * 1000 / ms
	}
	_ = u.s.store.Scan(st.ID, 0, func(f store.Fragment) bool {
		ss.FirstMS = f.ProducerMS
		return false
	})
	ss.Video = u.videoText(st.ID, last)
	return ss
}

// videoText describes the stream's video ("H.264 1280×720"), from the
// header of its newest fragment, parsed once per header.
func (u *ui) videoText(stream store.StreamID, f store.Fragment) string {
	u.mu.Lock()
	vi, ok := u.video[stream]
	u.mu.Unlock()
	if ok && vi.segment == f.Segment && vi.offset == f.HeaderOff {
		return vi.text
	}
	header, _, err := u.s.store.ReadFragment(stream, f)
	if err != nil {
		return ""
	}
	text := describeHeader(header)
	u.mu.Lock()
	u.video[stream] = videoInfo{segment: f.Segment, offset: f.HeaderOff, text: text}
	u.mu.Unlock()
	return text
}

func describeHeader(header []byte) string {
	d := mkv.NewDemuxer(bytes.NewReader(header))
	for {
		ev, err := d.Next()
		if err != nil {
			return ""
		}
		if ev.Type != mkv.EventHeader {
			continue
		}
		var parts []string
		for _, t := range ev.Header.Tracks {
			name := map[string]string{"V_MPEG4/ISO/AVC": "H.264", "V_MPEGH/ISO/HEVC": "H.265", "A_AAC": "AAC"}[t.CodecID]
			if name == "" {
				name = t.CodecID
			}
			if t.Type == mkv.TrackTypeVideo {
				parts = append([]string{fmt.Sprintf("%s %d×%d", name, t.Width, t.Height)}, parts...)
			} else {
				parts = append(parts, name)
			}
		}
		return strings.Join(parts, " + ")
	}
}

// maxSpans bounds the timeline's size; fragments closer than spanGap
// merge into one span.
const (
	maxSpans = 2000
	spanGap  = 2000 // ms
)

// timeline lists what the stream holds as spans of producer time.
func (u *ui) timeline(_ http.ResponseWriter, r *http.Request) (any, error) {
	st, err := u.s.store.Stream(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	out := struct {
		First int64      `json:"first,omitempty"`
		Last  int64      `json:"last,omitempty"`
		Spans [][2]int64 `json:"spans"`
	}{Spans: [][2]int64{}}
	err = u.s.store.Scan(st.ID, 0, func(f store.Fragment) bool {
		start, end := f.ProducerMS, f.ProducerMS+max(f.DurationMS, 1)
		if out.First == 0 || start < out.First {
			out.First = start
		}
		out.Last = max(out.Last, end)
		if n := len(out.Spans); n > 0 && start-out.Spans[n-1][1] <= spanGap && start >= out.Spans[n-1][0] {
			out.Spans[n-1][1] = max(out.Spans[n-1][1], end)
		} else if n < maxSpans {
			out.Spans = append(out.Spans, [2]int64{start, end})
		} else {
			out.Spans[n-1][1] = max(out.Spans[n-1][1], end)
		}
		return true
	})
	return out, err
}

// hls creates a playback session for the page's player.
func (u *ui) hls(_ http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("name")
	var in struct {
		Mode  string `json:"mode"`
		Start int64  `json:"start"`
		End   int64  `json:"end"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
		return nil, uiErrorf(http.StatusBadRequest, "the request is not JSON: %v", err)
	}
	switch in.Mode {
	case "LIVE", "LIVE_REPLAY", "ON_DEMAND":
	default:
		return nil, uiErrorf(http.StatusBadRequest, "mode %q is not LIVE, LIVE_REPLAY or ON_DEMAND", in.Mode)
	}
	if _, err := u.s.store.Stream(name); err != nil {
		return nil, err
	}
	var start, end time.Time
	if in.Start > 0 {
		start = time.UnixMilli(in.Start)
	}
	if in.End > 0 {
		end = time.UnixMilli(in.End)
	}
	url, err := u.cfg.HLS.NewSession(r.Context(), name, in.Mode, start, end)
	if err != nil {
		return nil, pageError(err)
	}
	return map[string]string{"url": url}, nil
}

// clip sends an MP4 of a time range as a download.
func (u *ui) clip(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("name")
	start, err1 := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64)
	end, err2 := strconv.ParseInt(r.URL.Query().Get("end"), 10, 64)
	if err1 != nil || err2 != nil || end <= start {
		return nil, uiErrorf(http.StatusBadRequest, "start and end must be epoch milliseconds, start before end")
	}
	if _, err := u.s.store.Stream(name); err != nil {
		return nil, err
	}
	// The headers go out with the clip's first byte, so that a clip that
	// cannot be made is still told as an error.
	out := &clipWriter{w: w, name: fmt.Sprintf("%s-%d.mp4", name, start/1000)}
	if err := u.cfg.Clips.WriteClip(r.Context(), out, name, time.UnixMilli(start), time.UnixMilli(end)); err != nil {
		if !out.started {
			return nil, pageError(err)
		}
		u.s.log.Info("page clip: the download broke off", "stream", name, "error", err)
	}
	return nil, nil
}

// clipWriter sends a clip's download headers before its first byte.
type clipWriter struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (c *clipWriter) Write(p []byte) (int, error) {
	if !c.started {
		c.started = true
		h := c.w.Header()
		h.Set("Content-Type", "video/mp4")
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", c.name))
	}
	return c.w.Write(p)
}

// pageError is an API error as the page shows it: its status, its message
// and its name.
func pageError(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		return uiErrorf(ae.Status, "%s", plainAPIError(err))
	}
	return err
}

// plainAPIError keeps an API error's message and name for the page.
func plainAPIError(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Message + " (" + ae.Type + ")"
	}
	return err.Error()
}
