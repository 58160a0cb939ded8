package fleet

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testRules stand in for put's flags: a few of each kind.
func testRules(env map[string]string) Rules {
	return Rules{
		NewFlagSet: func() *flag.FlagSet {
			fs := flag.NewFlagSet("put", flag.ContinueOnError)
			fs.SetOutput(discard{})
			fs.String("stream", "", "stream")
			fs.String("source", "", "source")
			fs.String("endpoint", "", "endpoint")
			fs.String("region", "", "region")
			fs.String("buffer-dir", "", "dir")
			fs.Duration("buffer", 2*time.Minute, "buffer")
			fs.Int("retention", 24, "hours")
			fs.Float64("fps", 0, "fps")
			fs.Bool("no-create", false, "no create")
			fs.String("metrics-addr", "", "metrics")
			fs.String("log-level", "info", "level")
			fs.Duration("clock-offset", 0, "") // hidden: for tests, not a key
			return fs
		},
		Global: []string{"metrics-addr", "log-level"},
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func settings(st Stream) string {
	var b []string
	for _, s := range st.Settings {
		b = append(b, fmt.Sprintf("%s=%s@%d", s.Key, s.Value, s.Line))
	}
	return strings.Join(b, " ")
}

func TestParse(t *testing.T) {
	env := map[string]string{"HOST": "10.0.0.7", "PASS": "p$ss", "EMPTY": ""}
	for _, tc := range []struct {
		name, yaml string
		want       []string // per stream: "name: settings"
		global     string
		errs       []string // each a line of the error, in order
	}{
		{name: "defaults inherited and overridden",
			yaml: "endpoint: http://x\nbuffer: 5m\nstreams:\n  - stream: a\n    source: rpicam\n  - stream: b\n    source: testsrc\n    buffer: 1m\n",
			want: []string{"a: endpoint=http://x@1 buffer=5m@2 stream=a@4 source=rpicam@5",
				"b: endpoint=http://x@1 stream=b@6 source=testsrc@7 buffer=1m@8"}},
		{name: "global keys apart",
			yaml:   "metrics-addr: 127.0.0.1:9090\nlog-level: debug\nstreams:\n  - stream: a\n    source: rpicam\n",
			want:   []string{"a: stream=a@4 source=rpicam@5"},
			global: "log-level=debug metrics-addr=127.0.0.1:9090"},
		{name: "expansion",
			yaml: "streams:\n  - stream: ${HOST:-x}-gate\n    source: rtsp://u:${PASS}@${HOST}/s${EMPTY}\n    region: ${REGION:-eu-west-1}\n    endpoint: ${EMPTY:-http://d}\n    buffer-dir: $${HOME}/b\n",
			want: []string{"10.0.0.7-gate: stream=10.0.0.7-gate@2 source=rtsp://u:p$ss@10.0.0.7/s@3 region=eu-west-1@4 endpoint=http://d@5 buffer-dir=${HOME}/b@6"}},
		{name: "unset variable",
			yaml: "streams:\n  - stream: a\n    source: rtsp://${CAM_USER}@h/\n",
			errs: []string{"cfg.yaml:3: source: the environment variable CAM_USER is not set (set it, or write ${CAM_USER:-DEFAULT})"}},
		{name: "unclosed and bad variable",
			yaml: "region: ${REGION\nstreams:\n  - stream: a\n    source: ${1X}\n",
			errs: []string{`cfg.yaml:1: region: "${REGION": ${ without its closing }`, "cfg.yaml:4: source: ${1X}: not a variable name (letters, digits and _)"}},
		{name: "unknown keys with suggestions",
			yaml: "regoin: eu-west-1\nstreams:\n  - stream: a\n    source: rpicam\n    bufer: 5m\n    fsp: 5\n    colour: red\n    clock-offset: 1s\n",
			errs: []string{`cfg.yaml:1: unknown key "regoin"; did you mean "region"? (keys are the long names of kvsgo put's flags: kvsgo help put)`,
				`cfg.yaml:5: unknown key "bufer"; did you mean "buffer"? (keys are the long names of kvsgo put's flags: kvsgo help put)`,
				`cfg.yaml:6: unknown key "fsp"; did you mean "fps"? (keys are the long names of kvsgo put's flags: kvsgo help put)`,
				`cfg.yaml:7: unknown key "colour" (keys are the long names of kvsgo put's flags: kvsgo help put)`,
				`cfg.yaml:8: unknown key "clock-offset" (keys are the long names of kvsgo put's flags: kvsgo help put)`}},
		{name: "values parsed by their flags",
			yaml: "buffer: 5 minutes\nretention: 1.5\nstreams:\n  - stream: a\n    source: rpicam\n    fps: fast\n    no-create: maybe\n",
			errs: []string{`cfg.yaml:1: buffer: "5 minutes" is not a duration (like 500ms, 30s, 5m, 1h30m)`, `cfg.yaml:2: retention: "1.5" is not a whole number`,
				`cfg.yaml:6: fps: "fast" is not a number`, `cfg.yaml:7: no-create: "maybe" is not true or false`}},
		{name: "duplicate streams and keys",
			yaml: "streams:\n  - stream: a\n    source: rpicam\n  - stream: a\n    source: testsrc\n    source: rpicam\n",
			errs: []string{`cfg.yaml:4: stream "a" is listed twice (first on line 2): one producer per stream`, "cfg.yaml:6: source is given twice (first on line 5)"}},
		{name: "stream shape",
			yaml: "stream: top\nstreams:\n  - source: rpicam\n  - stream: b\n  - just-a-string\n  - stream: c\n    source: [a, b]\n    metrics-addr: :9\n    endpoint:\n",
			errs: []string{"cfg.yaml:1: stream: names one stream: put it in an item of streams:", "cfg.yaml:3: a stream without stream: (the Kinesis video stream's name)",
				`cfg.yaml:4: stream "b" has no source: (rpicam, v4l2:/dev/video0, rtsp://…, testsrc, …)`, "cfg.yaml:5: a stream must be keys (stream:, source:, any kvsgo put flag)",
				"cfg.yaml:7: source: one value expected, not a list or keys", "cfg.yaml:8: metrics-addr is for the whole run, not one stream: put it at the top level",
				"cfg.yaml:9: endpoint has no value"}},
		{name: "no streams", yaml: "region: x\n", errs: []string{"cfg.yaml: no streams: list; add one, each item with at least stream: and source:"}},
		{name: "streams not a list", yaml: "streams: porch\n", errs: []string{"cfg.yaml:1: streams: must be a list of streams (items starting with -), each with at least stream: and source:"}},
		{name: "empty", yaml: "", errs: []string{"cfg.yaml: empty: it needs at least a streams: list, each item with stream: and source:"}},
		{name: "not YAML", yaml: "region: x\nstreams:\n  - stream: 'a\n", errs: []string{"cfg.yaml:3: not valid YAML: found unexpected end of stream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("cfg.yaml", []byte(tc.yaml), testRules(env))
			if tc.errs != nil {
				if err == nil {
					t.Fatalf("no error; want %q", tc.errs)
				}
				if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(tc.errs, "\n") {
					t.Fatalf("errors:\n%s\nwant:\n%s", err, strings.Join(tc.errs, "\n"))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, st := range cfg.Streams {
				got = append(got, st.Name+": "+settings(st))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("streams:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			var g []string
			for _, k := range []string{"log-level", "metrics-addr"} {
				if v, ok := cfg.Global[k]; ok {
					g = append(g, k+"="+v)
				}
			}
			if strings.Join(g, " ") != tc.global {
				t.Fatalf("global %q, want %q", g, tc.global)
			}
		})
	}
}

func TestSame(t *testing.T) {
	parse := func(y string) Stream {
		cfg, err := Parse("c", []byte(y), testRules(nil))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Streams[0]
	}
	a := parse("streams:\n  - stream: a\n    source: rpicam\n")
	if !a.Same(parse("# moved down a line\nstreams:\n  - stream: a\n    source: rpicam\n")) {
		t.Error("the same settings on other lines are not the same stream")
	}
	if a.Same(parse("fps: 10\nstreams:\n  - stream: a\n    source: rpicam\n")) {
		t.Error("a new default is not a change")
	}
	if a.Same(parse("streams:\n  - stream: a\n    source: testsrc\n")) {
		t.Error("a new source is not a change")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"endpoint: http://x\nstreams:\n  - stream: a\n    source: rpicam\n",
		"streams:\n  - stream: ${A:-b}\n    source: $${x}${B}\n",
		"streams: [{stream: a, source: b}, {stream: a}]\n",
		"a: &x 1\nstreams:\n  - stream: *x\n    source: *x\n",
		"streams:\n  - stream: a\n   source: b\n",
		"- 1\n- 2\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := Parse("f", []byte(s), testRules(map[string]string{"A": "a"}))
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f:") {
					t.Fatalf("an error without its file: %q", line)
				}
			}
			return
		}
		if len(cfg.Streams) == 0 {
			t.Fatal("no error, no streams")
		}
		seen := map[string]bool{}
		for _, st := range cfg.Streams {
			if st.Name == "" || seen[st.Name] {
				t.Fatalf("stream name %q empty or twice", st.Name)
			}
			seen[st.Name] = true
		}
	})
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"${A}", "${A:-x}", "$${A}", "${", "a${B:-}c", "${A}${A}", "$$${A}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Expand(s, func(k string) (string, bool) { return "v", k == "A" })
		if err == nil && !strings.Contains(s, "${") && out != s {
			t.Fatalf("%q without ${ became %q", s, out)
		}
	})
}
