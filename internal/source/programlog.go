package source

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
)

// programLog takes a supervised program's standard error and logs it line
// by line under the source's name: its error lines at ERROR, its warnings
// at WARN, the rest at INFO. It keeps the first error line, usually the
// cause (GStreamer's later ones say "Internal data stream error"), for the
// message that says why the program stopped.
type programLog struct {
	log     *slog.Logger
	program string

	mu       sync.Mutex
	partial  []byte
	detail   int        // lines that belong to GStreamer's last ERROR:/WARNING:
	gstLevel slog.Level // and its level
	first    string     // the first error line
}

func (l *programLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexAny(l.partial, "\r\n")
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > 64<<10 {
		// A program writing without newlines: log it in pieces.
		l.line(string(l.partial))
		l.partial = l.partial[:0]
	}
	return len(p), nil
}

// flush logs a last line without a newline.
func (l *programLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.line(string(l.partial))
		l.partial = nil
	}
}

func (l *programLog) firstError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

func (l *programLog) line(s string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return
	}
	level := programLevel(s)
	switch {
	case s == "Additional debug info:":
		// GStreamer's detail of the ERROR: or WARNING: before: this line
		// and where it came from.
		level, l.detail = l.gstLevel, 1
	case l.detail > 0:
		level = l.gstLevel
		l.detail--
	case strings.HasPrefix(s, "ERROR:"), strings.HasPrefix(s, "WARNING:"):
		l.gstLevel = level
	}
	if level == slog.LevelError && l.first == "" {
		l.first = s
	}
	l.log.Log(context.Background(), level, s, "program", l.program)
}

var (
	// GStreamer's debug log: "0:00:01.234 12345 0x55d4 ERROR  identity …".
	gstDebugLevel = regexp.MustCompile(`^\d+:\d{2}:\d{2}\.\d+\s+\d+\s+0x[0-9a-f]+\s+(ERROR|WARN|FIXME|INFO|DEBUG|LOG|TRACE)\s`)
	// ffmpeg's and shells' error lines, which carry no level of their own.
	errorWords = regexp.MustCompile(`(?i)\berror\b|\bfailed\b|\bfailure\b|no such file|not found|permission denied|invalid (data|argument|option)|unrecognized option|unknown (encoder|decoder|option)|cannot |could not |unable to |conversion failed`)
	warnWords  = regexp.MustCompile(`(?i)\bwarning\b|\bdeprecated\b|past duration|non[- ]monotonic`)
)

// programLevel tells an error line from a warning or a plain line:
// GStreamer's "ERROR:"/"WARNING:" lines and debug log, ffmpeg's
// "[error]"/"[fatal]" tags (-loglevel +level) and its untagged messages.
func programLevel(s string) slog.Level {
	switch {
	case strings.HasPrefix(s, "ERROR:"), strings.Contains(s, "[error]"), strings.Contains(s, "[fatal]"), strings.Contains(s, "[panic]"):
		return slog.LevelError
	case strings.HasPrefix(s, "WARNING:"), strings.Contains(s, "[warning]"):
		return slog.LevelWarn
	case strings.Contains(s, "[info]"), strings.Contains(s, "[verbose]"), strings.Contains(s, "[debug]"):
		return slog.LevelInfo
	}
	if m := gstDebugLevel.FindStringSubmatch(s); m != nil {
		switch m[1] {
		case "ERROR":
			return slog.LevelError
		case "WARN", "FIXME":
			return slog.LevelWarn
		}
		return slog.LevelInfo
	}
	switch {
	case errorWords.MatchString(s):
		return slog.LevelError
	case warnWords.MatchString(s):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
