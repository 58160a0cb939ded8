package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// commandFlags returns each command's flags (without those hidden from
// the help), read from the flag sets the commands build themselves, so
// that completion never falls behind them.
func commandFlags() (names []string, flags map[string][]string) {
	flags = map[string][]string{}
	for _, c := range commands() {
		names = append(names, c.name)
		if c.run == nil || c.name == "completion" {
			continue
		}
		env := &cliEnv{stdout: io.Discard, stderr: io.Discard}
		var sets []*flag.FlagSet
		env.flagSet = func(_ string, fs *flag.FlagSet) { sets = append(sets, fs) }
		// -h makes a command build its flag set and stop at once.
		if err := c.run(env, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
			panic(fmt.Sprintf("kvsgo %s -h: %v", c.name, err)) // a command that does not stop at -h is a bug
		}
		var got []string
		for _, fs := range sets {
			fs.VisitAll(func(f *flag.Flag) {
				switch {
				case f.Usage == "":
				case len(f.Name) == 1:
					got = append(got, "-"+f.Name) // -o
				default:
					got = append(got, "--"+f.Name)
				}
			})
		}
		sort.Strings(got)
		flags[c.name] = append(got, "--help")
	}
	flags["completion"] = []string{"bash", "zsh", "fish"}
	return names, flags
}

func runCompletion(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "completion", "completion bash|zsh|fish")
	if err := parseFlags(fs, nil); err != nil {
		return err
	}
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fs.Usage()
		return flag.ErrHelp
	}
	if len(args) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: name one shell: bash, zsh or fish", errUsage)
	}
	names, flags := commandFlags()
	var script string
	switch args[0] {
	case "bash":
		script = bashCompletion(names, flags)
	case "zsh":
		script = "#compdef kvsgo\n" + zshCompletion(names, flags)
	case "fish":
		script = fishCompletion(names, flags)
	default:
		return fmt.Errorf("%w: %q: kvsgo completes bash, zsh and fish", errUsage, args[0])
	}
	_, err := io.WriteString(env.stdout, script)
	return err
}

func bashCompletion(names []string, flags map[string][]string) string {
	var b strings.Builder
	b.WriteString("# kvsgo completion for bash: source <(kvsgo completion bash)\n_kvsgo() {\n")
	b.WriteString("    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n")
	fmt.Fprintf(&b, "    if [[ $COMP_CWORD -eq 1 ]]; then\n        COMPREPLY=($(compgen -W %q -- \"$cur\"))\n        return\n    fi\n", strings.Join(names, " "))
	b.WriteString("    case \"$prev\" in\n        --config|--buffer-dir|--data|--tls-cert|--tls-key|--iot-cert|--iot-key|--iot-ca|-o)\n            COMPREPLY=($(compgen -f -- \"$cur\"))\n            return;;\n    esac\n")
	b.WriteString("    local words\n    case \"${COMP_WORDS[1]}\" in\n")
	for _, n := range names {
		if len(flags[n]) > 0 {
			fmt.Fprintf(&b, "        %s) words=%q;;\n", n, strings.Join(flags[n], " "))
		}
	}
	b.WriteString("        help) words=" + fmt.Sprintf("%q", strings.Join(names, " ")) + ";;\n")
	b.WriteString("    esac\n    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\ncomplete -o default -F _kvsgo kvsgo\n")
	return b.String()
}

func zshCompletion(names []string, flags map[string][]string) string {
	var b strings.Builder
	b.WriteString("# kvsgo completion for zsh: kvsgo completion zsh > \"${fpath[1]}/_kvsgo\"\n_kvsgo() {\n")
	fmt.Fprintf(&b, "    if (( CURRENT == 2 )); then\n        compadd -- %s\n        return\n    fi\n", strings.Join(names, " "))
	b.WriteString("    case $words[2] in\n")
	for _, n := range names {
		if len(flags[n]) > 0 {
			fmt.Fprintf(&b, "        %s) compadd -- %s;;\n", n, strings.Join(flags[n], " "))
		}
	}
	fmt.Fprintf(&b, "        help) compadd -- %s;;\n", strings.Join(names, " "))
	// Autoloaded from $fpath, the file is _kvsgo's body: complete now;
	// sourced, register the function.
	b.WriteString("    esac\n    _files\n}\nif [[ \"${funcstack[1]}\" = _kvsgo ]]; then\n    _kvsgo \"$@\"\nelse\n    compdef _kvsgo kvsgo\nfi\n")
	return b.String()
}

func fishCompletion(names []string, flags map[string][]string) string {
	var b strings.Builder
	b.WriteString("# kvsgo completion for fish: kvsgo completion fish > ~/.config/fish/completions/kvsgo.fish\ncomplete -c kvsgo -f\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "complete -c kvsgo -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
	}
	for _, n := range names {
		for _, f := range flags[n] {
			switch {
			case strings.HasPrefix(f, "--"):
				fmt.Fprintf(&b, "complete -c kvsgo -n '__fish_seen_subcommand_from %s' -l %s\n", n, strings.TrimPrefix(f, "--"))
			case strings.HasPrefix(f, "-"):
				fmt.Fprintf(&b, "complete -c kvsgo -n '__fish_seen_subcommand_from %s' -o %s\n", n, strings.TrimPrefix(f, "-"))
			default:
				fmt.Fprintf(&b, "complete -c kvsgo -n '__fish_seen_subcommand_from %s' -a %s\n", n, f)
			}
		}
	}
	fmt.Fprintf(&b, "complete -c kvsgo -n '__fish_seen_subcommand_from help' -a %s\n", fishQuote(strings.Join(names, " ")))
	return b.String()
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}
