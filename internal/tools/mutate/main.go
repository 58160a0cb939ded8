// Command mutate breaks kvsgo's central claims on purpose, one at a time,
// in a scratch copy of the tree, and runs the tests that should notice: a
// mutation no test catches is a claim nothing protects. Run it through
// scripts/mutate; docs/TESTING.md holds the table of the last run.
//
// Each mutation is a few exact text replacements. A replacement whose old
// text is not in its file exactly once stops the run before anything is
// tested, so the list cannot rot silently as the code moves on.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mutate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "run only the mutations with these names (comma-separated)")
	list := fs.Bool("list", false, "list the mutations and the tests each runs, check that each still applies, and stop")
	baseline := fs.Bool("baseline", false, "run each mutation's tests on the unmutated tree first: a test that fails there proves nothing")
	keep := fs.Bool("keep", false, "keep the scratch copy (its path is printed)")
	verbose := fs.Bool("v", false, "run the tests with -v and print their output")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 2
	}
	chosen, err := choose(mutations, *only)
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 2
	}
	// Every replacement must still apply before anything runs.
	for _, m := range chosen {
		for _, e := range m.edits {
			b, err := os.ReadFile(filepath.Join(root, e.file))
			if err != nil {
				fmt.Fprintf(stderr, "mutate: %s: %v\n", m.name, err)
				return 2
			}
			if _, err := e.apply(b); err != nil {
				fmt.Fprintf(stderr, "mutate: %s: %v; update the mutation in internal/tools/mutate/mutations.go\n", m.name, err)
				return 2
			}
		}
	}
	if *list {
		for _, m := range chosen {
			fmt.Fprintf(stdout, "%-28s %s\n", m.name, m.claim)
			for _, t := range m.tests {
				fmt.Fprintf(stdout, "%-28s   go test -run '%s' %s\n", "", t.pattern(), t.pkg)
			}
		}
		return 0
	}

	scratch, err := os.MkdirTemp("", "kvsgo-mutate-")
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 2
	}
	if *keep {
		fmt.Fprintln(stderr, "scratch copy:", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	if err := copyTree(root, scratch); err != nil {
		fmt.Fprintln(stderr, "mutate: copying the tree:", err)
		return 2
	}
	fmt.Fprintf(stderr, "scratch copy of %s in %s; %d mutations\n", root, scratch, len(chosen))

	var results []result
	for _, m := range chosen {
		r := result{m: m}
		start := time.Now()
		if *baseline {
			for _, t := range m.tests {
				if o := t.run(scratch, false); o.failed() {
					r.baselineFail = append(r.baselineFail, fmt.Sprintf("%s %s", t.pkg, o.describe()))
				}
			}
		}
		restore, err := m.apply(scratch)
		if err != nil {
			fmt.Fprintf(stderr, "mutate: %s: %v\n", m.name, err)
			return 2
		}
		for _, t := range m.tests {
			fmt.Fprintf(stderr, "%s: go test -run '%s' %s ...\n", m.name, t.pattern(), t.pkg)
			o := t.run(scratch, *verbose)
			r.outcomes = append(r.outcomes, o)
			fmt.Fprintf(stderr, "%s:   %s (%s)\n", m.name, o.describe(), o.took.Round(time.Second))
			if o.buildFailed || *verbose {
				fmt.Fprintf(stderr, "%s\n", tail(o.output, 60))
			}
		}
		if err := restore(); err != nil {
			fmt.Fprintf(stderr, "mutate: %s: restoring the scratch copy: %v\n", m.name, err)
			return 2
		}
		r.took = time.Since(start)
		results = append(results, r)
	}

	fmt.Fprintln(stdout, table(results))
	code := 0
	for _, r := range results {
		if !r.caught() {
			code = 1
		}
	}
	return code
}

func choose(all []mutation, only string) ([]mutation, error) {
	if only == "" {
		return all, nil
	}
	var out []mutation
	for _, name := range strings.Split(only, ",") {
		found := false
		for _, m := range all {
			if m.name == strings.TrimSpace(name) {
				out, found = append(out, m), true
			}
		}
		if !found {
			return nil, fmt.Errorf("no mutation named %q (see -list)", name)
		}
	}
	return out, nil
}

// mutation is one claim broken on purpose.
type mutation struct {
	name  string
	claim string // what the mutation breaks, in a few words
	edits []edit
	tests []tests // the tests that should catch it
}

// edit replaces old with new in file, which must hold old exactly once.
type edit struct {
	file     string
	old, new string
}

func (e edit) apply(b []byte) ([]byte, error) {
	switch n := bytes.Count(b, []byte(e.old)); n {
	case 1:
		return bytes.Replace(b, []byte(e.old), []byte(e.new), 1), nil
	case 0:
		return nil, fmt.Errorf("%s no longer holds %q", e.file, firstLine(e.old))
	default:
		return nil, fmt.Errorf("%s holds %q %d times, not once", e.file, firstLine(e.old), n)
	}
}

// apply mutates the tree in dir; restore puts the files back.
func (m mutation) apply(dir string) (restore func() error, err error) {
	saved := map[string][]byte{}
	restore = func() error {
		for p, b := range saved {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range m.edits {
		p := filepath.Join(dir, e.file)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, errors.Join(err, restore())
		}
		if _, ok := saved[p]; !ok {
			saved[p] = b
		}
		nb, err := e.apply(b)
		if err != nil {
			return nil, errors.Join(err, restore())
		}
		if err := os.WriteFile(p, nb, 0o644); err != nil {
			return nil, errors.Join(err, restore())
		}
	}
	return restore, nil
}

// tests are tests of one package: top-level names, or one test and one of
// its subtests as "TestX/sub".
type tests struct {
	pkg     string
	names   []string
	timeout time.Duration
}

func (t tests) pattern() string {
	if len(t.names) == 1 && strings.Contains(t.names[0], "/") {
		top, sub, _ := strings.Cut(t.names[0], "/")
		return "^" + top + "$/^" + sub + "$"
	}
	return "^(" + strings.Join(t.names, "|") + ")$"
}

// outcome is one go test run on the mutated tree.
type outcome struct {
	t           tests
	failedTests []string
	timedOut    bool
	buildFailed bool
	exitErr     error
	output      string
	took        time.Duration
}

func (o outcome) failed() bool { return o.exitErr != nil }

func (o outcome) describe() string {
	switch {
	case o.buildFailed:
		return "BUILD FAILED (the mutation does not compile)"
	case o.timedOut:
		return "timed out: " + grouped(o.failedTests)
	case len(o.failedTests) > 0:
		return "failed: " + grouped(o.failedTests)
	case o.exitErr != nil:
		return "go test failed: " + o.exitErr.Error()
	}
	return "passed"
}

var (
	failRE    = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)
	timeoutRE = regexp.MustCompile(`(?m)^panic: test timed out after`)
	runningRE = regexp.MustCompile(`(?m)^\s+(Test\S+) \(`)
	buildRE   = regexp.MustCompile(`(?m)^FAIL\s+\S+ \[(build failed|setup failed)\]`)
)

func (t tests) run(dir string, verbose bool) outcome {
	timeout := t.timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	args := []string{"test", "-count=1", "-timeout", timeout.String(), "-run", t.pattern()}
	if verbose {
		args = append(args, "-v")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, t.pkg)...)
	cmd.Dir = dir
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	o := outcome{t: t, exitErr: err, output: out.String(), took: time.Since(start)}
	s := o.output
	o.buildFailed = buildRE.MatchString(s) || err != nil && strings.Contains(s, "building kvsgo:")
	if timeoutRE.MatchString(s) || ctx.Err() != nil {
		o.timedOut = true
		_, after, _ := strings.Cut(s, "running tests:")
		for _, m := range runningRE.FindAllStringSubmatch(after, -1) {
			o.failedTests = append(o.failedTests, m[1])
		}
		return o
	}
	seen := map[string]bool{}
	for _, m := range failRE.FindAllStringSubmatch(s, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			o.failedTests = append(o.failedTests, m[1])
		}
	}
	return o
}

type result struct {
	m            mutation
	outcomes     []outcome
	baselineFail []string
	took         time.Duration
}

// caught: some test failed on the mutated tree (and, with -baseline, the
// same tests passed without the mutation).
func (r result) caught() bool {
	if len(r.baselineFail) > 0 {
		return false
	}
	for _, o := range r.outcomes {
		if o.failed() && !o.buildFailed {
			return true
		}
	}
	return false
}

func (r result) verdict() string {
	if len(r.baselineFail) > 0 {
		return "UNKNOWN: fails without the mutation too (" + strings.Join(r.baselineFail, "; ") + ")"
	}
	var caughtBy []string
	for _, o := range r.outcomes {
		if o.buildFailed {
			return "ERROR: " + o.describe()
		}
		if o.failed() {
			caughtBy = append(caughtBy, o.describe())
		}
	}
	if len(caughtBy) == 0 {
		return "**SURVIVED**"
	}
	return "caught — " + strings.Join(caughtBy, "; ")
}

// table is the result in Markdown, as docs/TESTING.md quotes it.
func table(results []result) string {
	var b strings.Builder
	b.WriteString("| mutation | what it breaks | tests run | result | time |\n|---|---|---|---|---|\n")
	for _, r := range results {
		var ts []string
		for _, t := range r.m.tests {
			ts = append(ts, "`"+strings.TrimPrefix(t.pkg, "./")+"` "+strings.Join(t.names, ", "))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.m.name, r.m.claim, strings.Join(ts, "<br>"), r.verdict(), r.took.Round(time.Second))
	}
	return b.String()
}

// copyTree copies the files git knows of (tracked, or new and not
// ignored) as they are in the working tree.
func copyTree(root, dst string) error {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		info, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		p := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// grouped names failed tests with their failed subtests in brackets:
// TestX (a, b).
func grouped(names []string) string {
	var tops []string
	subs := map[string][]string{}
	for _, n := range names {
		top, sub, ok := strings.Cut(n, "/")
		if _, seen := subs[top]; !seen {
			tops = append(tops, top)
			subs[top] = nil
		}
		if ok {
			subs[top] = append(subs[top], sub)
		}
	}
	var out []string
	for _, t := range tops {
		if s := subs[t]; len(s) > 0 {
			t += " (" + strings.Join(s, ", ") + ")"
		}
		out = append(out, t)
	}
	return strings.Join(out, ", ")
}
