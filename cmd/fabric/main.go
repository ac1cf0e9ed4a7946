package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
)

const defaultURL = "ws://127.0.0.1:7420/rpc"

// Exit statuses; doc.go and `fabric help` document them.
const (
	exitOK          = 0
	exitFailed      = 1 // the task or operation failed
	exitUsage       = 2 // bad command line or input
	exitTransport   = 3 // could not connect, connection lost, timed out
	exitNotFound    = 4 // JSON-RPC -32001
	exitRefused     = 5 // any other JSON-RPC error
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	c := newCLI(ctx, os.Stdout, os.Stderr, os.Getenv)
	c.stdin = os.Stdin
	c.tty = isTerminal(os.Stdout)
	c.errTTY = isTerminal(os.Stderr)
	code := c.run(os.Args[1:])
	stop()
	os.Exit(code)
}

func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// run is the CLI as a function: the tests call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return newCLI(context.Background(), stdout, stderr, os.Getenv).run(args)
}

// cli holds one invocation's streams, environment and global flags.
type cli struct {
	ctx            context.Context // ends on SIGINT or SIGTERM
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	tty, errTTY    bool // stdout, stderr are terminals
	width          int  // terminal columns

	// Global flags.
	url     string
	token   string
	json    bool
	timeout time.Duration

	cmd string // the command being run, for messages
}

func newCLI(ctx context.Context, stdout, stderr io.Writer, getenv func(string) string) *cli {
	c := &cli{ctx: ctx, stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now, width: 80}
	if n, err := strconv.Atoi(getenv("COLUMNS")); err == nil && n >= 20 {
		c.width = n
	}
	c.url = getenv("FABRIC_URL")
	if c.url == "" {
		c.url = defaultURL
	}
	c.token = getenv("FABRIC_TOKEN")
	return c
}

// globalFlags defines the global flags on fs; every command's FlagSet has
// them too, so that `fabric task get ID --json` works.
func (c *cli) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", c.url, "fabricd's WebSocket `URL` (env FABRIC_URL)")
	fs.StringVar(&c.token, "token", c.token, "bearer `token` (env FABRIC_TOKEN)")
	fs.BoolVar(&c.json, "json", c.json, "machine output: the raw JSON results, one per line")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "how long the command may take; 0: 30s, and no limit for waiting commands")
}

func (c *cli) run(args []string) int {
	fs := flag.NewFlagSet("fabric", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.globalFlags(fs)
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(c.stderr, "fabric: %s\nRun 'fabric help' for usage.\n", flagError(err))
		return exitUsage
	}
	args = fs.Args()
	if *help || len(args) == 0 {
		c.usage(c.stdout)
		if len(args) == 0 && !*help {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "help" {
		return c.help(args[1:])
	}
	cmd, rest := findCommand(args)
	if cmd == nil {
		return c.unknownCommand(args)
	}
	return c.runCommand(cmd, rest)
}

func (c *cli) runCommand(cmd *command, args []string) int {
	c.cmd = cmd.name
	fs := flag.NewFlagSet("fabric "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	act := cmd.setup(c, fs)
	c.globalFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.commandUsage(c.stdout, cmd)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "fabric %s: %s\nusage: fabric %s %s\nRun 'fabric help %s' for details.\n",
			cmd.name, flagError(err), cmd.name, cmd.args, cmd.name)
		return exitUsage
	}
	if c.timeout < 0 {
		return c.exit(usagef("--timeout: want a duration >= 0 such as 30s; got %v", c.timeout))
	}
	if err := cmd.checkArgs(pos); err != nil {
		return c.exit(err)
	}
	return c.exit(act(pos))
}

// exitError carries an exit status and the message for stderr (none when
// empty: the output already said it).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

func failedf(format string, args ...any) error {
	return &exitError{code: exitFailed, msg: fmt.Sprintf(format, args...)}
}

// exit maps an error to the exit status, telling stderr why.
func (c *cli) exit(err error) int {
	if err == nil {
		return exitOK
	}
	prefix := "fabric " + c.cmd + ": "
	var ee *exitError
	var pe *protocol.Error
	switch {
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(c.stderr, "%s%s\n", prefix, ee.msg)
			if ee.code == exitUsage {
				fmt.Fprintf(c.stderr, "Run 'fabric help %s' for usage.\n", c.cmd)
			}
		}
		return ee.code
	case errors.As(err, &pe):
		fmt.Fprintf(c.stderr, "%s%s\n", prefix, describeRPCError(err, pe))
		if pe.Code == protocol.ErrNotFound.Code {
			return exitNotFound
		}
		return exitRefused
	case c.ctx.Err() != nil:
		fmt.Fprintf(c.stderr, "%sinterrupted\n", prefix)
		return exitInterrupted
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(c.stderr, "%stimed out (--timeout %v): %v\n", prefix, c.timeout, err)
		return exitTransport
	}
	fmt.Fprintf(c.stderr, "%s%v\n", prefix, err)
	if errors.Is(err, syscall.ECONNREFUSED) {
		fmt.Fprintf(c.stderr, "Is fabricd running at %s? Set --url or FABRIC_URL.\n", c.url)
	}
	return exitTransport
}

// describeRPCError renders a JSON-RPC error with its code and any data
// beyond the reason, which the message already holds.
func describeRPCError(err error, pe *protocol.Error) string {
	s := fmt.Sprintf("%v (code %d)", err, pe.Code)
	extra := map[string]any{}
	for k, v := range pe.Data {
		if k != "reason" {
			extra[k] = v
		}
	}
	if len(extra) > 0 {
		b, _ := json.Marshal(extra)
		s += " " + string(b)
	}
	return s
}

// context returns the context of a command: --timeout when given, else
// def (0: none).
func (c *cli) context(def time.Duration) (context.Context, context.CancelFunc) {
	d := c.timeout
	if d == 0 {
		d = def
	}
	if d == 0 {
		return context.WithCancel(c.ctx)
	}
	return context.WithTimeout(c.ctx, d)
}

// oneShot is the default limit of commands that do not wait.
const oneShot = 30 * time.Second

// connect dials fabricd.
func (c *cli) connect(ctx context.Context) (*client.Client, error) {
	if !strings.HasPrefix(c.url, "ws://") && !strings.HasPrefix(c.url, "wss://") {
		return nil, usagef("--url: want ws://HOST:PORT/rpc or wss://…; got %q", c.url)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return client.Dial(dctx, c.url, client.Options{Token: c.token})
}

// call runs one method on a fresh connection, bounded by the one-shot limit,
// and returns the raw result.
func (c *cli) call(method string, params any) (json.RawMessage, error) {
	ctx, cancel := c.context(oneShot)
	defer cancel()
	cl, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var raw json.RawMessage
	err = cl.Call(ctx, method, params, &raw)
	return raw, err
}

// emit prints a raw result as one line of JSON (--json).
func (c *cli) emit(raw json.RawMessage) {
	c.stdout.Write(raw)
	io.WriteString(c.stdout, "\n")
}

// callResult calls method. With --json it prints the raw answer and reports
// shown; otherwise it decodes the answer into a T for human output.
func callResult[T any](c *cli, method string, params any) (v T, shown bool, err error) {
	raw, err := c.call(method, params)
	if err != nil {
		return v, false, err
	}
	if c.json {
		c.emit(raw)
		return v, true, nil
	}
	return v, false, decode(raw, &v)
}

// decode decodes a raw result for human output.
func decode(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("the server's answer does not decode into %T: %v", v, err)
	}
	return nil
}
