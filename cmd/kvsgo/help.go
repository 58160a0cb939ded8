package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// helpGroup is a titled group of a command's flags in its help.
type helpGroup struct {
	title string
	flags []string
}

// commandHelp is what a command's help shows besides its usage line: its
// flags by group (a flag in none goes under "Other") and real examples.
type commandHelp struct {
	groups   []helpGroup
	examples []string // "# what it does\nkvsgo …"
}

var iotFlagNames = []string{"iot-endpoint", "iot-cert", "iot-key", "iot-ca", "iot-role-alias", "iot-thing-name"}

func helpFor(name string) commandHelp {
	switch name {
	case "put":
		return commandHelp{
			groups: []helpGroup{
				{"Source", []string{"source", "fps", "fast", "width", "height", "bitrate", "keyint", "profile", "low-latency", "rtsp-transport"}},
				{"Stream", []string{"stream", "retention", "no-create", "fragment-duration"}},
				{"AWS", append([]string{"endpoint", "region", "access-key", "secret-key", "session-token"}, iotFlagNames...)},
				{"Buffering and delivery", []string{"buffer", "storage-size", "buffer-dir", "buffer-size", "buffer-age", "ack-timeout", "give-up-after", "close-timeout"}},
				{"Output", []string{"metrics-addr", "log-level", "quiet"}},
				{"kvssink's names, for people moving over", []string{"stream-name", "aws-region", "retention-period", "framerate", "max-latency", "connection-staleness", "buffer-duration", "iot-certificate"}},
			},
			examples: []string{
				"# The Raspberry Pi camera to Amazon Kinesis Video Streams (credentials from the AWS chain)\nkvsgo put --stream porch --source rpicam --region eu-west-1",
				"# An IP camera's own H.264 into a local kvsgo serve, nothing lost across a crash or power cut\nkvsgo put --stream gate --source rtsp://user:pass@192.168.1.20/stream1 \\\n    --endpoint http://127.0.0.1:4567 --buffer-dir /var/lib/kvsgo",
				"# A file, as fast as the service takes it\nkvsgo put --stream archive --source recording.mkv --fast",
				"# ffmpeg's output through stdin\nffmpeg -re -i in.mp4 -c:v libx264 -f matroska - | kvsgo put --stream test --source -",
			},
		}
	case "run":
		return commandHelp{
			examples: []string{
				"# Every camera of kvsgo.yaml, each streamed on its own (docs/run.md has the format)\nkvsgo run --config kvsgo.yaml",
				"# Check a file: every mistake with its line, nothing started\nkvsgo run --config /etc/kvsgo/kvsgo.yaml --check",
				"# Reload it: unchanged streams go on untouched\nkill -HUP $(pidof kvsgo)      # or: systemctl reload kvsgo",
			},
		}
	case "get":
		return commandHelp{
			groups: []helpGroup{
				{"Stream", []string{"stream", "start", "until-caught-up"}},
				{"Output", []string{"format", "o", "log-level"}},
				{"AWS", []string{"endpoint", "region", "access-key", "secret-key", "session-token", "give-up-after"}},
			},
			examples: []string{
				"# Watch a stream live\nkvsgo get --stream porch | ffplay -",
				"# Everything kept so far, into a file\nkvsgo get --stream porch --start earliest --until-caught-up -o porch.mkv",
				"# Raw H.264 for a detector, from a local kvsgo serve\nkvsgo get --stream porch --format annexb --endpoint http://127.0.0.1:4567 | ./detect",
			},
		}
	case "serve":
		return commandHelp{
			groups: []helpGroup{
				{"Server", []string{"listen", "data", "advertise-url", "tls-cert", "tls-key", "insecure"}},
				{"AWS emulation", []string{"access-key", "secret-key", "region", "transition-delay", "no-throttle"}},
				{"Output", []string{"log-level"}},
			},
			examples: []string{
				"# A local Kinesis Video Streams on this machine, with its page at http://127.0.0.1:4567\nkvsgo serve",
				"# For the cameras of the network, requests signed with one key\nkvsgo serve --listen 0.0.0.0:4567 --access-key AKIDLOCAL --secret-key s3cret --data /var/lib/kvsgo",
				"# The AWS CLI against it\naws kinesisvideo list-streams --endpoint-url http://127.0.0.1:4567",
			},
		}
	case "demo":
		return commandHelp{
			examples: []string{
				"# A server, a test camera streaming into it, and the page in your browser\nkvsgo demo",
				"# On a fixed port\nkvsgo demo --listen 127.0.0.1:4567",
				"# With the server's and the camera's logs\nkvsgo demo --log-level info",
			},
		}
	case "completion":
		return commandHelp{
			examples: []string{
				"# bash, for this shell\nsource <(kvsgo completion bash)",
				"# zsh, for every shell (a directory of your $fpath)\nkvsgo completion zsh > \"${fpath[1]}/_kvsgo\"",
				"# fish\nkvsgo completion fish > ~/.config/fish/completions/kvsgo.fish",
			},
		}
	}
	return commandHelp{}
}

// printHelp prints a command's usage line, summary, flags by group and
// examples.
func printHelp(fs *flag.FlagSet, name, usage string) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: kvsgo %s\n", usage)
	for _, c := range commands() {
		if c.name == name {
			fmt.Fprintf(w, "\n%s%s.\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
		}
	}
	h := helpFor(name)
	var shown []string
	for _, g := range h.groups {
		printFlags(w, fs, g.title, func(f *flag.Flag) bool { return slices.Contains(g.flags, f.Name) })
		shown = append(shown, g.flags...)
	}
	title := "Flags"
	if len(h.groups) > 0 {
		title = "Other"
	}
	printFlags(w, fs, title, func(f *flag.Flag) bool { return !slices.Contains(shown, f.Name) })
	if len(h.examples) > 0 {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, e := range h.examples {
			fmt.Fprintf(w, "  %s\n\n", strings.ReplaceAll(e, "\n", "\n  "))
		}
	}
}

// printFlags lists the flags of fs that pass keep, as the flag package
// does, under a title; flags without a usage text (for tests, not users)
// are left out.
func printFlags(w io.Writer, fs *flag.FlagSet, title string, keep func(*flag.Flag) bool) {
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shown.SetOutput(w)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage != "" && keep(f) {
			shown.Var(f.Value, f.Name, f.Usage)
			n++
		}
	})
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	shown.PrintDefaults()
}
