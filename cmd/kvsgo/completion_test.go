package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// complete runs the bash completion script as bash would on the words
// typed so far (the last one being completed) and returns its answers.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	cmd := exec.Command("bash", "--norc", "-c", `source "$1" && complete -p kvsgo && COMP_WORDS=(`+strings.Join(quoted, " ")+`) && COMP_CWORD=$((${#COMP_WORDS[@]}-1)) && { _kvsgo; printf '%s\n' "${COMPREPLY[@]}"; }`,
		"bash", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[0] != "complete -o default -F _kvsgo kvsgo" {
		t.Fatalf("complete -p kvsgo: %q", lines[0])
	}
	return lines[1:]
}

// TestBashCompletion: the script completes commands and each command's
// own flags, every one of put's among them, and files after --config.
func TestBashCompletion(t *testing.T) {
	code, script, errOut := runCLI("completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: %d %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "kvsgo.bash")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := complete(t, file, "kvsgo", "r"); !slices.Equal(got, []string{"run"}) {
		t.Errorf("kvsgo r<TAB>: %q", got)
	}
	if got := complete(t, file, "kvsgo", "put", "--buffer-"); !slices.Equal(got, []string{"--buffer-age", "--buffer-dir", "--buffer-duration", "--buffer-size"}) {
		t.Errorf("kvsgo put --buffer-<TAB>: %q", got)
	}
	if got := complete(t, file, "kvsgo", "run", "--c"); !slices.Equal(got, []string{"--check", "--config"}) {
		t.Errorf("kvsgo run --c<TAB>: %q", got)
	}
	if got := complete(t, file, "kvsgo", "completion", "f"); !slices.Equal(got, []string{"fish"}) {
		t.Errorf("kvsgo completion f<TAB>: %q", got)
	}
	if got := complete(t, file, "kvsgo", "put", "--clock"); len(got) != 0 {
		t.Errorf("a flag hidden from the help is completed: %q", got)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kvsgo.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := complete(t, file, "kvsgo", "run", "--config", filepath.Join(dir, "kvsgo.y")); !slices.Equal(got, []string{filepath.Join(dir, "kvsgo.yaml")}) {
		t.Errorf("kvsgo run --config <TAB>: %q", got)
	}
	// Every flag the help shows, from the flag set itself.
	for _, f := range putFlagNames(t) {
		if got := complete(t, file, "kvsgo", "put", "--"+f); !slices.Contains(got, "--"+f) {
			t.Errorf("kvsgo put --%s<TAB>: %q", f, got)
		}
	}
}

// TestZshFishCompletion: the other shells' scripts carry the same
// commands and flags.
func TestZshFishCompletion(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		code, script, errOut := runCLI("completion", shell)
		if code != 0 {
			t.Fatalf("completion %s: %d %s", shell, code, errOut)
		}
		for _, want := range []string{"buffer-dir", "iot-thing-name", "until-caught-up", "check", "run", "serve"} {
			if !strings.Contains(script, want) {
				t.Errorf("%s script lacks %s", shell, want)
			}
		}
		// The shell itself reads it without a syntax error.
		file := filepath.Join(t.TempDir(), "kvsgo."+shell)
		if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		check := exec.Command(shell, "-n", file)
		if shell == "fish" {
			check = exec.Command("fish", "--no-execute", file)
		}
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v: %s", shell, err, out)
		}
	}
	// fish completes as it would at a prompt.
	_, script, _ := runCLI("completion", "fish")
	file := filepath.Join(t.TempDir(), "kvsgo.fish")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C "kvsgo put --buffer-"; complete -C "kvsgo get -"`, file).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "--buffer-age\n--buffer-dir\n--buffer-duration\n--buffer-size\n") || !strings.Contains(string(out), "\n-o\n") ||
		!strings.Contains(string(out), "\n--until-caught-up\n") {
		t.Errorf("fish completes: %v\n%s", err, out)
	}
	if code, _, errOut := runCLI("completion", "tcsh"); code != 2 || !strings.Contains(errOut, "bash, zsh and fish") {
		t.Errorf("completion tcsh: %d %s", code, errOut)
	}
}

// TestHelpTeaches: every command's help groups its flags and ends with
// examples that use only flags it has.
func TestHelpTeaches(t *testing.T) {
	_, flags := commandFlags()
	for _, c := range []string{"put", "run", "get", "serve", "demo", "completion"} {
		code, _, help := runCLI("help", c)
		if code != 0 || !strings.Contains(help, "\nExamples:\n  # ") {
			t.Fatalf("help %s: %d\n%s", c, code, help)
		}
		if h := helpFor(c); len(h.examples) < 3 {
			t.Errorf("%s: %d examples", c, len(h.examples))
		}
		for _, g := range helpFor(c).groups {
			if !strings.Contains(help, "\n"+g.title+":\n") {
				t.Errorf("help %s lacks the group %s", c, g.title)
			}
			for _, f := range g.flags {
				if !slices.Contains(flags[c], "--"+f) && !slices.Contains(flags[c], "-"+f) {
					t.Errorf("help %s groups %s, which is not one of its flags", c, f)
				}
			}
		}
		// The examples' flags are the command's own.
		for _, e := range helpFor(c).examples {
			cmdline := e[strings.Index(e, "\n"):]
			if !strings.Contains(cmdline, "kvsgo "+c) {
				continue
			}
			for _, f := range regexp.MustCompile(`\s(--?[a-z][a-z0-9-]*)`).FindAllStringSubmatch(cmdline[strings.Index(cmdline, "kvsgo "+c):], -1) {
				if !slices.Contains(flags[c], f[1]) && !strings.HasPrefix(f[1], "--endpoint-url") {
					t.Errorf("an example of %s uses %s, not one of its flags: %s", c, f[1], e)
				}
			}
		}
	}
	if code, _, help := runCLI("help", "put"); code != 0 || strings.Contains(help, "\nOther:\n") {
		t.Errorf("put has flags in no group:\n%s", help[strings.Index(help, "\nOther:\n")+1:])
	}
}
