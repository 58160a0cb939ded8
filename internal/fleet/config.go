// Package fleet runs several streams from one config file (`kvsgo run
// --config`): it reads the file, supervises one producer per stream,
// restarting a failing one with back-off, reloads by difference, and
// reports every stream's state.
package fleet

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Setting is one key of the file, its value expanded, and where it was.
type Setting struct {
	Key, Value string
	Line       int
}

// Stream is one item of `streams:`: its own settings after the defaults
// it inherits, in the file's order.
type Stream struct {
	Name     string
	Line     int
	Settings []Setting
}

// Same reports whether two streams would run identically: a reload keeps
// such a stream running untouched.
func (s Stream) Same(o Stream) bool {
	if s.Name != o.Name || len(s.Settings) != len(o.Settings) {
		return false
	}
	for i := range s.Settings {
		if s.Settings[i].Key != o.Settings[i].Key || s.Settings[i].Value != o.Settings[i].Value {
			return false
		}
	}
	return true
}

// Config is a parsed file.
type Config struct {
	// Global holds the keys that are the whole run's, not a stream's
	// (one /metrics for all, one log).
	Global  map[string]string
	Streams []Stream
}

// Rules say which keys exist and how values parse: the flags of one
// stream (kvsgo put's), so every key is a flag's long name.
type Rules struct {
	// NewFlagSet returns a fresh flag set for one stream's settings.
	NewFlagSet func() *flag.FlagSet
	// Global keys may only be at the top level; they are the run's.
	Global []string
	// Getenv looks variables up for ${VAR}.
	Getenv func(string) (string, bool)
	// Check, if set, checks a stream whose keys and values are all
	// right, as a whole (flags that go together).
	Check func(Stream) error
}

// Error is a mistake in the file, at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Parse reads a config file's bytes; file names it in errors. Every
// mistake found is returned (errors.Join of *Error), not just the first.
func Parse(file string, data []byte, r Rules) (*Config, error) {
	p := &parser{file: file, rules: r}
	cfg := p.parse(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b error) int { return a.(*Error).Line - b.(*Error).Line })
		return nil, errors.Join(slices.CompactFunc(p.errs, func(a, b error) bool { return a.Error() == b.Error() })...)
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)`)

type parser struct {
	file  string
	rules Rules
	errs  []error
	known []string // every key, for suggestions
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) parse(data []byte) *Config {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		p.errorf(line, "not valid YAML: %s", msg)
		return nil
	}
	if len(doc.Content) == 0 {
		p.errorf(0, "empty: it needs at least a streams: list, each item with stream: and source:")
		return nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		p.errorf(top.Line, "the top level must be keys (defaults) and a streams: list")
		return nil
	}
	fs := p.rules.NewFlagSet()
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage != "" {
			p.known = append(p.known, f.Name)
		}
	})
	p.known = append(p.known, "streams")
	cfg := &Config{Global: map[string]string{}}
	var defaults []Setting
	var streams *yaml.Node
	streamsLine := 0
	for _, kv := range p.pairs(top) {
		k, v := kv[0], kv[1]
		switch {
		case k.Value == "streams":
			streams, streamsLine = v, k.Line
		case k.Value == "stream":
			p.errorf(k.Line, "stream: names one stream: put it in an item of streams:")
		default:
			s, ok := p.setting(k, v)
			if !ok {
				continue
			}
			p.check(fs, s) // once here, not in every stream
			if slices.Contains(p.rules.Global, s.Key) {
				cfg.Global[s.Key] = s.Value
				continue
			}
			defaults = append(defaults, s)
		}
	}
	if streams == nil {
		p.errorf(0, "no streams: list; add one, each item with at least stream: and source:")
		return cfg
	}
	if streams.Kind != yaml.SequenceNode || len(streams.Content) == 0 {
		p.errorf(streamsLine, "streams: must be a list of streams (items starting with -), each with at least stream: and source:")
		return cfg
	}
	seen := map[string]int{}
	for _, item := range streams.Content {
		if item.Kind != yaml.MappingNode {
			p.errorf(item.Line, "a stream must be keys (stream:, source:, any kvsgo put flag)")
			continue
		}
		st := Stream{Line: item.Line, Settings: slices.Clone(defaults)}
		before := len(p.errs)
		given := map[string]bool{} // keys of the item, even those in error
		fs := p.rules.NewFlagSet()
		for _, kv := range p.pairs(item) {
			k, v := kv[0], kv[1]
			given[k.Value] = true
			if k.Value == "streams" {
				p.errorf(k.Line, "streams: inside a stream: streams are not nested")
				continue
			}
			s, ok := p.setting(k, v)
			if !ok {
				continue
			}
			if slices.Contains(p.rules.Global, s.Key) {
				p.errorf(s.Line, "%s is for the whole run, not one stream: put it at the top level", s.Key)
				continue
			}
			if s.Key == "stream" {
				st.Name = s.Value
			}
			p.check(fs, s)
			// A stream's own value replaces the default.
			st.Settings = slices.DeleteFunc(st.Settings, func(d Setting) bool { return d.Key == s.Key })
			st.Settings = append(st.Settings, s)
		}
		p.checkStream(st, given, seen)
		if len(p.errs) == before && p.rules.Check != nil && !p.inherited(st) {
			if err := p.rules.Check(st); err != nil {
				p.errorf(st.Line, "stream %q: %v", st.Name, err)
			}
		}
		cfg.Streams = append(cfg.Streams, st)
	}
	return cfg
}

// inherited reports whether a default the stream inherits was in error
// (then the whole-stream check would only repeat it).
func (p *parser) inherited(st Stream) bool {
	for _, e := range p.errs {
		for _, s := range st.Settings {
			if e.(*Error).Line == s.Line {
				return true
			}
		}
	}
	return false
}

// pairs returns a mapping's key and value nodes, refusing repeated keys.
func (p *parser) pairs(m *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	first := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if at, dup := first[k.Value]; dup {
			p.errorf(k.Line, "%s is given twice (first on line %d)", k.Value, at)
			continue
		}
		first[k.Value] = k.Line
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

// setting checks a key and expands its value.
func (p *parser) setting(k, v *yaml.Node) (Setting, bool) {
	key := k.Value
	if !slices.Contains(p.known, key) {
		msg := fmt.Sprintf("unknown key %q", key)
		if near := nearest(key, p.known); near != "" {
			msg += fmt.Sprintf("; did you mean %q?", near)
		}
		p.errorf(k.Line, "%s (keys are the long names of kvsgo put's flags: kvsgo help put)", msg)
		return Setting{}, false
	}
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind != yaml.ScalarNode {
		p.errorf(v.Line, "%s: one value expected, not a list or keys", key)
		return Setting{}, false
	}
	if v.Tag == "!!null" {
		p.errorf(k.Line, "%s has no value", key)
		return Setting{}, false
	}
	val, err := Expand(v.Value, p.rules.Getenv)
	if err != nil {
		p.errorf(v.Line, "%s: %v", key, err)
		return Setting{}, false
	}
	return Setting{Key: key, Value: val, Line: v.Line}, true
}

// check parses one value with its flag's own parser.
func (p *parser) check(fs *flag.FlagSet, s Setting) {
	if err := fs.Set(s.Key, s.Value); err != nil {
		p.errorf(s.Line, "%s: %q is not %s", s.Key, s.Value, kind(fs.Lookup(s.Key)))
	}
}

// kind says what a flag's values look like.
func kind(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "valid"
	}
	switch g.Get().(type) {
	case time.Duration:
		return "a duration (like 500ms, 30s, 5m, 1h30m)"
	case bool:
		return "true or false"
	case int, int64, uint, uint64:
		return "a whole number"
	case float64:
		return "a number"
	}
	return "valid"
}

// checkStream checks what a stream must have.
func (p *parser) checkStream(st Stream, given map[string]bool, seen map[string]int) {
	has := func(key string) bool {
		return given[key] || slices.ContainsFunc(st.Settings, func(s Setting) bool { return s.Key == key && s.Value != "" })
	}
	switch {
	case st.Name == "" && !given["stream"]:
		p.errorf(st.Line, "a stream without stream: (the Kinesis video stream's name)")
	case st.Name == "":
	case seen[st.Name] != 0:
		p.errorf(st.Line, "stream %q is listed twice (first on line %d): one producer per stream", st.Name, seen[st.Name])
	default:
		seen[st.Name] = st.Line
	}
	if !has("source") {
		p.errorf(st.Line, "stream %q has no source: (rpicam, v4l2:/dev/video0, rtsp://…, testsrc, …)", st.Name)
	}
}

// nearest returns the known key closest to key, if close enough to be a
// likely typo.
func nearest(key string, known []string) string {
	best, bestD := "", len(key)/2+2
	for _, k := range known {
		if d := distance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the edit distance counting a swap of two neighbours as
// one edit (the optimal string alignment distance): fsp is one from fps.
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Expand replaces ${VAR} with the variable's value and ${VAR:-default}
// with the default when VAR is unset or empty, as a shell does. $${ is a
// literal ${. Nothing else is touched: a password with a lone $ stays as
// it is.
func Expand(s string, getenv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i]) // the first $ of $$ stands for the literal
			b.WriteString("{")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("%q: ${ without its closing }", s[i:])
		}
		expr := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validName(name) {
			return "", fmt.Errorf("${%s}: not a variable name (letters, digits and _)", expr)
		}
		v, ok := getenv(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		case ok:
			// set but empty: as the shell, an empty value
		default:
			return "", fmt.Errorf("the environment variable %s is not set (set it, or write ${%s:-DEFAULT})", name, name)
		}
	}
}

func validName(n string) bool {
	if n == "" || (n[0] >= '0' && n[0] <= '9') {
		return false
	}
	for _, c := range n {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
