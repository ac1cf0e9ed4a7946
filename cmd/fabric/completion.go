package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

var completionCmd = &command{
	name:    "completion",
	args:    "bash|zsh|fish",
	summary: "print a shell completion script for the commands and flags",
	minArgs: 1, maxArgs: 1,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func(args []string) error {
			m := newComplModel()
			switch args[0] {
			case "bash":
				m.bash(c.stdout)
			case "zsh":
				m.zsh(c.stdout)
			case "fish":
				m.fish(c.stdout)
			default:
				return usagef("want bash, zsh or fish; got %q", args[0])
			}
			return nil
		}
	},
}

// Values offered after a flag, and flags that name files.
var (
	flagValues = map[string][]string{
		"priority": {"critical", "high", "normal", "low", "background"},
		"state":    {"queued", "running", "retrying", "succeeded", "failed", "cancelled"},
		"abi":      {"wasi-command", "fabric-v1"},
		"cap":      {"clock", "random"},
	}
	fileFlags = map[string]bool{"input-file": true}
)

type complFlag struct {
	name, usage string
	takesValue  bool
}

type complCmd struct {
	name, summary string
	flags         []complFlag // the command's own, then the global ones
}

// complModel is what every script is generated from: the command table.
type complModel struct {
	top        []complCmd // first words, with their summaries
	sub        map[string][]complCmd
	leaves     []complCmd
	valueFlags []string // every flag that takes a value
}

func newComplModel() *complModel {
	m := &complModel{sub: map[string][]complCmd{}}
	seenTop := map[string]bool{}
	valueFlags := map[string]bool{}
	for _, cmd := range commands {
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.setup(&cli{}, fs)
		(&cli{}).globalFlags(fs)
		leaf := complCmd{name: cmd.name, summary: cmd.summary}
		fs.VisitAll(func(f *flag.Flag) {
			_, isBool := f.Value.(interface{ IsBoolFlag() bool })
			_, usage := flag.UnquoteUsage(f)
			leaf.flags = append(leaf.flags, complFlag{name: f.Name, usage: usage, takesValue: !isBool})
			if !isBool {
				valueFlags[f.Name] = true
			}
		})
		m.leaves = append(m.leaves, leaf)
		first, rest, grouped := strings.Cut(cmd.name, " ")
		if grouped {
			m.sub[first] = append(m.sub[first], complCmd{name: rest, summary: cmd.summary})
		}
		if !seenTop[first] {
			seenTop[first] = true
			summary := cmd.summary
			if grouped {
				summary = groups[first]
			}
			m.top = append(m.top, complCmd{name: first, summary: summary})
		}
	}
	m.top = append(m.top, complCmd{name: "help", summary: "show the usage of fabric or of a command"})
	for f := range valueFlags {
		m.valueFlags = append(m.valueFlags, f)
	}
	sort.Strings(m.valueFlags)
	return m
}

func names(cmds []complCmd) string {
	s := make([]string, len(cmds))
	for i, c := range cmds {
		s[i] = c.name
	}
	return strings.Join(s, " ")
}

func flagWords(c complCmd) string {
	s := make([]string, len(c.flags))
	for i, f := range c.flags {
		s[i] = "--" + f.name
	}
	return strings.Join(s, " ")
}

func (m *complModel) groupNames() []string {
	g := make([]string, 0, len(m.sub))
	for k := range m.sub {
		g = append(g, k)
	}
	sort.Strings(g)
	return g
}

func (m *complModel) bash(w io.Writer) {
	valueFlags := "--" + strings.Join(m.valueFlags, "|--")
	fmt.Fprintf(w, `# bash completion for fabric. Load it with:
#   source <(fabric completion bash)
_fabric() {
    local cur prev cmd i w
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in -*) continue ;; esac
        case "${COMP_WORDS[i-1]}" in %s) continue ;; esac
        case "$cmd" in
            "") cmd="$w" ;;
            %s) cmd="$cmd $w" ;;
            *) break ;;
        esac
    done
    case "$prev" in
`, valueFlags, strings.Join(m.groupNames(), "|"))
	for _, f := range m.valueFlags {
		switch {
		case flagValues[f] != nil:
			fmt.Fprintf(w, "        --%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", f, strings.Join(flagValues[f], " "))
		case fileFlags[f]:
			fmt.Fprintf(w, "        --%s) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", f)
		}
	}
	fmt.Fprintf(w, "        %s) return ;;\n    esac\n", valueFlags)
	fmt.Fprint(w, "    if [[ \"$cur\" == -* ]]; then\n        case \"$cmd\" in\n")
	for _, l := range m.leaves {
		fmt.Fprintf(w, "            %q) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", l.name, flagWords(l))
	}
	fmt.Fprintf(w, "            *) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n        esac\n        return\n    fi\n", "--url --token --json --timeout --help")
	fmt.Fprint(w, "    case \"$cmd\" in\n")
	fmt.Fprintf(w, "        \"\") COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", names(m.top))
	for _, g := range m.groupNames() {
		fmt.Fprintf(w, "        %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", g, names(m.sub[g]))
	}
	fmt.Fprint(w, `        completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
        help) COMPREPLY=($(compgen -W "`+names(m.top)+`" -- "$cur")) ;;
        "agent register") compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
}
complete -F _fabric fabric
`)
}

// zshQuote quotes s for a zsh single-quoted word, escaping ':' as _describe needs.
func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, "'", `'\''`), ":", `\:`) + "'"
}

func describeList(cmds []complCmd) string {
	var b strings.Builder
	for _, c := range cmds {
		b.WriteString(" " + zshQuote(c.name+":"+c.summary))
	}
	return b.String()
}

func (m *complModel) zsh(w io.Writer) {
	valueFlags := "--" + strings.Join(m.valueFlags, "|--")
	fmt.Fprintf(w, `#compdef fabric
# zsh completion for fabric. Put it in a directory of $fpath as _fabric, or:
#   source <(fabric completion zsh)
_fabric() {
    local cmd="" i w cur prev
    local -a cmds
    for ((i = 2; i < CURRENT; i++)); do
        w=${words[i]}
        [[ $w == -* ]] && continue
        case ${words[i-1]} in (%s) continue ;; esac
        case $cmd in
            ("") cmd=$w ;;
            (%s) cmd="$cmd $w" ;;
            (*) break ;;
        esac
    done
    cur=${words[CURRENT]}
    prev=${words[CURRENT-1]}
    case $prev in
`, valueFlags, strings.Join(m.groupNames(), "|"))
	for _, f := range m.valueFlags {
		switch {
		case flagValues[f] != nil:
			fmt.Fprintf(w, "        (--%s) compadd -- %s; return ;;\n", f, strings.Join(flagValues[f], " "))
		case fileFlags[f]:
			fmt.Fprintf(w, "        (--%s) _files; return ;;\n", f)
		}
	}
	fmt.Fprintf(w, "        (%s) return ;;\n    esac\n", valueFlags)
	fmt.Fprint(w, "    if [[ $cur == -* ]]; then\n        case $cmd in\n")
	for _, l := range m.leaves {
		fmt.Fprintf(w, "            (%q) compadd -- %s ;;\n", l.name, flagWords(l))
	}
	fmt.Fprint(w, "            (*) compadd -- --url --token --json --timeout --help ;;\n        esac\n        return\n    fi\n")
	fmt.Fprint(w, "    case $cmd in\n")
	fmt.Fprintf(w, "        (\"\") cmds=(%s); _describe command cmds ;;\n", describeList(m.top))
	for _, g := range m.groupNames() {
		fmt.Fprintf(w, "        (%s) cmds=(%s); _describe command cmds ;;\n", g, describeList(m.sub[g]))
	}
	fmt.Fprintf(w, `        (completion) compadd -- bash zsh fish ;;
        (help) compadd -- %s ;;
        ("agent register") _files ;;
    esac
}
if [[ $funcstack[1] == _fabric ]]; then
    _fabric "$@"
else
    compdef _fabric fabric
fi
`, names(m.top))
}

// fishQuote quotes s as a fish single-quoted string.
func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

func (m *complModel) fish(w io.Writer) {
	var vf []string
	for _, f := range m.valueFlags {
		vf = append(vf, "'--"+f+"'")
	}
	fmt.Fprintf(w, `# fish completion for fabric. Load it with:
#   fabric completion fish | source
function __fabric_cmd
    set -l words (commandline -opc)
    set -e words[1]
    set -l cmd
    set -l skip 0
    for w in $words
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case %s
                set skip 1
                continue
            case '-*'
                continue
        end
        switch "$cmd"
            case ''
                set cmd $w
            case %s
                set cmd "$cmd $w"
            case '*'
                break
        end
    end
    echo $cmd
end
function __fabric_at
    test (__fabric_cmd | string collect) = "$argv"
end
complete -c fabric -f
`, strings.Join(vf, " "), strings.Join(m.groupNames(), " "))
	for _, c := range m.top {
		fmt.Fprintf(w, "complete -c fabric -n '__fabric_at' -a %s -d %s\n", c.name, fishQuote(c.summary))
	}
	for _, g := range m.groupNames() {
		for _, c := range m.sub[g] {
			fmt.Fprintf(w, "complete -c fabric -n '__fabric_at %s' -a %s -d %s\n", g, c.name, fishQuote(c.summary))
		}
	}
	fmt.Fprint(w, "complete -c fabric -n '__fabric_at completion' -a 'bash zsh fish'\n")
	fmt.Fprintf(w, "complete -c fabric -n '__fabric_at help' -a %s\n", fishQuote(names(m.top)))
	fmt.Fprint(w, "complete -c fabric -n '__fabric_at agent register' -F\n")
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	(&cli{}).globalFlags(fs)
	global := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { global[f.Name] = true })
	for _, l := range m.leaves {
		for _, f := range l.flags {
			if global[f.name] {
				continue
			}
			fmt.Fprintf(w, "complete -c fabric -n '__fabric_at %s' -l %s%s -d %s\n", l.name, f.name, fishFlagArgs(f), fishQuote(f.usage))
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		_, usage := flag.UnquoteUsage(f)
		_, isBool := f.Value.(interface{ IsBoolFlag() bool })
		fmt.Fprintf(w, "complete -c fabric -l %s%s -d %s\n", f.Name, fishFlagArgs(complFlag{name: f.Name, takesValue: !isBool}), fishQuote(usage))
	})
}

func fishFlagArgs(f complFlag) string {
	switch {
	case flagValues[f.name] != nil:
		return " -x -a " + fishQuote(strings.Join(flagValues[f.name], " "))
	case fileFlags[f.name]:
		return " -r -F"
	case f.takesValue:
		return " -x"
	}
	return ""
}
