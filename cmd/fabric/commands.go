package main

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
)

// command is one leaf command. setup defines its flags on fs and returns the
// action that runs with the positional arguments.
type command struct {
	name    string // "task submit"
	args    string // synopsis of the positional arguments
	summary string
	minArgs int
	maxArgs int // -1: any number
	setup   func(c *cli, fs *flag.FlagSet) action
}

type action func(args []string) error

// commands lists every command; help, completion and dispatch read it.
var commands []*command

func init() {
	commands = []*command{
		agentRegisterCmd, agentListCmd, agentGetCmd, agentStatsCmd, agentRmCmd,
		taskSubmitCmd, taskGetCmd, taskWaitCmd, taskCancelCmd, taskListCmd,
		watchCmd, kpiCmd, healthCmd, benchCmd, soakCmd, echoServerCmd, completionCmd,
	}
}

// groups are the first words of two-word commands.
var groups = map[string]string{
	"agent": "register and inspect agents (WebAssembly modules)",
	"task":  "submit, inspect, wait for and cancel tasks",
}

func (cmd *command) checkArgs(pos []string) error {
	switch {
	case len(pos) < cmd.minArgs:
		return usagef("missing arguments: want %s", cmd.args)
	case cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs:
		return usagef("unexpected argument %q: want %s", pos[cmd.maxArgs], cmd.args)
	}
	return nil
}

// findCommand finds the command named by the leading words of args.
func findCommand(args []string) (*command, []string) {
	for _, cmd := range commands {
		words := strings.Fields(cmd.name)
		if len(args) >= len(words) && reflect.DeepEqual(args[:len(words)], words) {
			return cmd, args[len(words):]
		}
	}
	return nil, nil
}

func (c *cli) unknownCommand(args []string) int {
	if _, ok := groups[args[0]]; ok {
		if len(args) == 1 {
			fmt.Fprintf(c.stderr, "fabric %s: missing subcommand\n\n", args[0])
		} else {
			fmt.Fprintf(c.stderr, "fabric %s: unknown subcommand %q\n\n", args[0], args[1])
		}
		c.groupUsage(c.stderr, args[0])
		return exitUsage
	}
	fmt.Fprintf(c.stderr, "fabric: unknown command %q\nRun 'fabric help' for the list of commands.\n", args[0])
	return exitUsage
}

func (c *cli) help(args []string) int {
	if len(args) == 0 {
		c.usage(c.stdout)
		return exitOK
	}
	if cmd, rest := findCommand(args); cmd != nil && len(rest) == 0 {
		c.commandUsage(c.stdout, cmd)
		return exitOK
	}
	if _, ok := groups[args[0]]; ok && len(args) == 1 {
		c.groupUsage(c.stdout, args[0])
		return exitOK
	}
	fmt.Fprintf(c.stderr, "fabric help: no command %q\n", strings.Join(args, " "))
	return exitUsage
}

const exitCodesHelp = `Exit status:
  0    ok
  1    the task or operation failed: a task ended failed or cancelled
       (task submit --wait, task wait), or task wait --timeout-ms passed
       before it ended; health is not "ok"; bench or soak saw a task
       fail or not complete, an error other than -32002, or (soak) a
       measure grow
  2    usage error: unknown command or flag, missing or extra argument,
       bad input (invalid JSON, unreadable file, bad base64)
  3    connection or transport error: cannot connect, the connection
       was lost, --timeout passed
  4    not found: the server answered -32001 (no such task or agent)
  5    the server refused: any other JSON-RPC error (invalid params,
       unauthorized, overloaded, conflict...); the code and message are
       printed on stderr
  130  interrupted by SIGINT or SIGTERM while waiting; watch and kpi
       end with 0
`

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, "fabric is the command line client of fabricd, Fabric's execution server.\n\n")
	fmt.Fprint(w, "Usage:\n  fabric [global flags] COMMAND [arguments] [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cmd := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", cmd.name, cmd.args, cmd.summary)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\tthis text, or a command's flags\n")
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags (also accepted after the command):\n")
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	(&cli{url: defaultURL}).globalFlags(fs)
	printFlags(w, fs)
	fmt.Fprintf(w, "\nHuman output is tables and sentences; with --json each result is the server's\nJSON, one value per line, for scripts.\n\n%s", exitCodesHelp)
}

func (c *cli) groupUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "fabric %s: %s\n\nCommands:\n", group, groups[group])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cmd := range commands {
		if strings.HasPrefix(cmd.name, group+" ") {
			fmt.Fprintf(tw, "  fabric %s %s\t%s\n", cmd.name, cmd.args, cmd.summary)
		}
	}
	tw.Flush()
}

func (c *cli) commandUsage(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: fabric %s %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.setup(&cli{}, fs)
	if hasFlags(fs) {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	fmt.Fprint(w, "\nGlobal flags: --url, --token, --json, --timeout (see 'fabric help').\n")
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printFlags lists fs's flags the GNU way, --name VALUE.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		kind, usage := flag.UnquoteUsage(f)
		if kind == "value" || kind == "" {
			kind = ""
		} else {
			kind = " " + kind
		}
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
			kind = ""
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "[]" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  --%s%s\t%s%s\n", n, kind, usage, def)
	}
	tw.Flush()
}

// parseInterspersed parses flags anywhere among the positional arguments,
// as users write them (`task submit echo '{}' --wait`). After "--" the rest
// is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// listFlag collects a repeatable flag; each use may hold a comma list.
type listFlag struct {
	vals  []string
	comma bool // split on commas
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(s string) error {
	if !l.comma {
		l.vals = append(l.vals, s)
		return nil
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.vals = append(l.vals, v)
		}
	}
	return nil
}

// labelsFlag collects --label k=v into a map.
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	var kv []string
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func (l labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value; got %q", s)
	}
	l[k] = v
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// flagError words the flag package's errors with the --name spelling that
// the help text uses.
func flagError(err error) string {
	s := err.Error()
	if name, ok := strings.CutPrefix(s, "flag provided but not defined: -"); ok {
		return "unknown flag --" + name
	}
	if name, ok := strings.CutPrefix(s, "flag needs an argument: -"); ok {
		return "flag --" + name + " needs a value"
	}
	return strings.Replace(s, " for flag -", " for --", 1)
}
