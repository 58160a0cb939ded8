package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
)

// command is one subcommand of kvsgo. Each one parses its own flags.
type command struct {
	name    string
	summary string
	run     func(env *cliEnv, args []string) error
}

// cliEnv carries what a subcommand may touch, so that tests can run the
// whole CLI in-process.
type cliEnv struct {
	stdout, stderr io.Writer
	// flagSet, when set, is told of every flag set made (completion
	// reads the commands' flags so).
	flagSet func(command string, fs *flag.FlagSet)
}

// errUsage marks a mistake in the command line; it exits with status 2.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{name: "put", summary: "stream a camera, file or stdin to Kinesis Video Streams", run: runPut},
		{name: "run", summary: "stream several cameras from one YAML file (kvsgo run --config kvsgo.yaml), reloaded on SIGHUP", run: runRun},
		{name: "get", summary: "read a stream back (GetMedia) as Matroska or raw H.264/H.265, following it live", run: runGet},
		{name: "serve", summary: serveSummary, run: runServe},
		{name: "demo", summary: demoSummary, run: runDemo},
		{name: "completion", summary: "print a bash, zsh or fish script completing kvsgo's commands and flags", run: runCompletion},
		{name: "version", summary: "print the version and build information", run: runVersion},
		{name: "help", summary: "show help for kvsgo or one of its commands", run: nil},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	env := &cliEnv{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			return runCommand(env, args[1], []string{"-h"})
		}
		printUsage(stdout)
		return 0
	case "-version", "--version":
		name = "version"
	}
	return runCommand(env, name, args[1:])
}

func runCommand(env *cliEnv, name string, args []string) int {
	for _, c := range commands() {
		if c.name != name || c.run == nil {
			continue
		}
		err := c.run(env, args)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			if err != errUsage { // a wrapped one carries a message
				fmt.Fprintf(env.stderr, "kvsgo %s: %v\n", name, err)
			}
			return 2
		default:
			fmt.Fprintf(env.stderr, "kvsgo %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(env.stderr, "kvsgo: unknown command %q\n\n", name)
	printUsage(env.stderr)
	return 2
}

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("kvsgo gets camera video into Amazon Kinesis Video Streams.\n\nUsage:\n  kvsgo <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'kvsgo help <command>' for a command's flags.\n")
	io.WriteString(w, b.String())
}

// newFlagSet returns a flag set that reports errors instead of exiting;
// its help groups the flags and shows examples (help.go).
func newFlagSet(env *cliEnv, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("kvsgo "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() { printHelp(fs, name, usage) }
	if env.flagSet != nil {
		env.flagSet(name, fs)
	}
	return fs
}

// parseFlags parses args and turns flag errors into errUsage (the flag
// package has already printed what was wrong).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// Set at link time by scripts/release (-ldflags "-X main.version=…
// -X main.commit=… -X main.date=…"); otherwise read from the build info.
var version, commit, date string

func runVersion(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "version", "version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b := readBuild()
	details := []string{}
	if b.commit != "" {
		details = append(details, "commit "+b.commit)
	}
	if b.date != "" {
		details = append(details, b.date)
	}
	details = append(details, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	fmt.Fprintf(env.stdout, "kvsgo %s (%s)\n", b.version, strings.Join(details, ", "))
	return nil
}

type build struct{ version, commit, date string }

// readBuild prefers what the linker set, then the module version (go
// install …@v1.2.3), then the VCS revision and time Go records when it
// builds from a checkout.
func readBuild() build {
	b := build{version: version, commit: commit, date: date}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.version == "" {
			b.version = "devel"
		}
		return b
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			if b.date == "" {
				b.date = s.Value
			}
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if b.commit == "" && revision != "" {
		b.commit = revision + modified
	}
	switch {
	case b.version != "":
	case info.Main.Version != "" && info.Main.Version != "(devel)":
		b.version = info.Main.Version
	case len(revision) >= 12:
		b.version = "devel-" + revision[:12]
	default:
		b.version = "devel"
	}
	return b
}

func newLogger(env *cliEnv, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: l})), nil
}
