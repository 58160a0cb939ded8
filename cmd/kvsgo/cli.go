package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
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
}

// errUsage marks a mistake in the command line; it exits with status 2.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{name: "put", summary: "stream a camera, file or stdin to Kinesis Video Streams", run: runPut},
		{name: "get", summary: "read a stream back (GetMedia) as Matroska or raw H.264/H.265, following it live", run: runGet},
		{name: "serve", summary: "run a local Kinesis Video Streams server (control plane, PutMedia, GetMedia, ListFragments) with a web page", run: runServe},
		{name: "demo", summary: "run a local server with a test camera streaming into it, and show the web page", run: runDemo},
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
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'kvsgo help <command>' for a command's flags.\n")
	io.WriteString(w, b.String())
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(env *cliEnv, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("kvsgo "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kvsgo %s\n", usage)
		fs.PrintDefaults()
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

// version is set at link time by scripts/build (-X main.version=...).
var version = ""

func runVersion(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "version", "version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "kvsgo %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// buildVersion prefers the linker-set version, then the module version,
// then the VCS revision the binary was built from.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
