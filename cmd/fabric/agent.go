package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chimera-fabric/fabric/protocol"
)

var agentRegisterCmd = &command{
	name:    "agent register",
	args:    "NAME FILE.wasm",
	summary: "register a WebAssembly module as the agent NAME",
	minArgs: 2, maxArgs: 2,
	setup: func(c *cli, fs *flag.FlagSet) action {
		abi := fs.String("abi", "", "the agent's ABI: wasi-command or fabric-v1 (default: detected from its exports)")
		entry := fs.String("entry", "", "the exported `function` to run (default: the ABI's)")
		caps := &listFlag{comma: true}
		fs.Var(caps, "cap", "capabilities to grant, comma-separated: clock, random")
		memMB := fs.Int64("memory-mb", 0, "ceiling of a task's linear memory in `MiB` (default: the server's)")
		timeoutMs := fs.Int64("timeout-ms", 0, "ceiling of a task's run time in `ms` (default: the server's)")
		replace := fs.Bool("replace", false, "replace an agent of that name with other bytes")
		reuse := fs.Bool("reuse-instances", false, "let the agent's tasks run in instances that ran its earlier tasks (fabric-v1 only; faster, but its tasks can see each other's leftovers)")
		return func(args []string) error {
			wasm, err := os.ReadFile(args[1])
			if err != nil {
				return usagef("FILE.wasm: %v", err)
			}
			switch {
			case *memMB < 0:
				return usagef("--memory-mb: want >= 0; got %d", *memMB)
			case *timeoutMs < 0:
				return usagef("--timeout-ms: want >= 0; got %d", *timeoutMs)
			}
			p := protocol.RegisterParams{
				Name: args[0], Wasm: wasm, ABI: *abi, Entry: *entry,
				Capabilities: caps.vals, Replace: *replace, ReuseInstances: *reuse,
			}
			if *memMB > 0 || *timeoutMs > 0 {
				p.Limits = &protocol.Limits{MemoryMB: *memMB, TimeoutMs: *timeoutMs}
			}
			a, shown, err := callResult[protocol.Agent](c, protocol.MethodAgentRegister, p)
			if err != nil || shown {
				return err
			}
			fmt.Fprintf(c.stdout, "registered agent %s (%s, %s, %s)\n", a.Name, a.ABI, fmtBytes(a.SizeBytes), shortDigest(a.Digest))
			return nil
		}
	},
}

var agentListCmd = &command{
	name:    "agent list",
	summary: "list the registered agents",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func([]string) error {
			l, shown, err := callResult[protocol.AgentList](c, protocol.MethodAgentList, protocol.Empty{})
			if err != nil || shown {
				return err
			}
			if len(l.Agents) == 0 {
				fmt.Fprintln(c.stdout, "no agents registered")
				return nil
			}
			tw := newTable(c.stdout)
			fmt.Fprintln(tw, "NAME\tABI\tSIZE\tDIGEST\tCAPABILITIES\tREGISTERED")
			for _, a := range l.Agents {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.ABI, fmtBytes(a.SizeBytes),
					shortDigest(a.Digest), orDash(strings.Join(a.Capabilities, ",")), relTime(a.RegisteredAt, c.now()))
			}
			return tw.Flush()
		}
	},
}

var agentGetCmd = &command{
	name:    "agent get",
	args:    "NAME",
	summary: "show one agent",
	minArgs: 1, maxArgs: 1,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func(args []string) error {
			a, shown, err := callResult[protocol.Agent](c, protocol.MethodAgentGet, protocol.NameParams{Name: args[0]})
			if err != nil || shown {
				return err
			}
			c.printAgent(c.stdout, a)
			return nil
		}
	},
}

func (c *cli) printAgent(w io.Writer, a protocol.Agent) {
	tw := newTable(w)
	fmt.Fprintf(tw, "name\t%s\n", a.Name)
	fmt.Fprintf(tw, "digest\t%s\n", a.Digest)
	fmt.Fprintf(tw, "abi\t%s\n", a.ABI)
	fmt.Fprintf(tw, "entry\t%s\n", orDash(a.Entry))
	fmt.Fprintf(tw, "size\t%s (%d bytes)\n", fmtBytes(a.SizeBytes), a.SizeBytes)
	fmt.Fprintf(tw, "capabilities\t%s\n", orDash(strings.Join(a.Capabilities, ", ")))
	fmt.Fprintf(tw, "limits\t%s\n", fmtLimits(a.Limits))
	if a.ReuseInstances {
		fmt.Fprintf(tw, "instances\treused between its tasks\n")
	}
	fmt.Fprintf(tw, "registered\t%s (%s)\n", relTime(a.RegisteredAt, c.now()), a.RegisteredAt.Local().Format(timeLayout))
	tw.Flush()
}

const timeLayout = "2006-01-02 15:04:05"

func fmtLimits(l protocol.Limits) string {
	var parts []string
	if l.MemoryMB > 0 {
		parts = append(parts, fmt.Sprintf("memory %d MiB", l.MemoryMB))
	}
	if l.TimeoutMs > 0 {
		parts = append(parts, "timeout "+fmtMs(float64(l.TimeoutMs)))
	}
	if l.OutputBytes > 0 {
		parts = append(parts, "output "+fmtBytes(l.OutputBytes))
	}
	if l.LogBytes > 0 {
		parts = append(parts, "logs "+fmtBytes(l.LogBytes))
	}
	if l.Fuel > 0 {
		parts = append(parts, fmt.Sprintf("fuel %d", l.Fuel))
	}
	if len(parts) == 0 {
		return "the server's"
	}
	return strings.Join(parts, ", ")
}

// shortDigest keeps the algorithm and 12 hex digits: sha256:0123456789ab.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}

var agentStatsCmd = &command{
	name:    "agent stats",
	args:    "[NAME]",
	summary: "show task statistics of every agent, or of one",
	maxArgs: 1,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func(args []string) error {
			var p protocol.StatsParams
			if len(args) == 1 {
				p.Name = args[0]
			}
			l, shown, err := callResult[protocol.AgentStatsList](c, protocol.MethodAgentStats, p)
			if err != nil || shown {
				return err
			}
			if len(l.Agents) == 0 {
				fmt.Fprintln(c.stdout, "no agents registered")
				return nil
			}
			c.statsTable(c.stdout, l.Agents)
			return nil
		}
	},
}

// statsTable prints agent statistics; kpi's view uses it too.
func (c *cli) statsTable(w io.Writer, stats []protocol.AgentStats) {
	tw := newTable(w)
	fmt.Fprintln(tw, "AGENT\tTASKS\tOK\tFAILED\tCANCELLED\tRUNNING\tAVG\tP50\tP99\tCPU\tMEM PEAK\tLAST")
	for _, s := range stats {
		avg, p50, p99, cpu := "-", "-", "-", "-"
		if s.TasksTotal > 0 {
			avg, p50, p99 = fmtMs(s.AvgDurationMs), fmtMs(s.P50Ms), fmtMs(s.P99Ms)
			cpu = fmtDuration(secondsDuration(s.CPUSecondsTotal))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.TasksTotal, s.Succeeded,
			s.Failed, s.Cancelled, s.Running, avg, p50, p99, cpu, fmtMiB(s.MemoryPeakMBMax), relTimePtr(s.LastTaskAt, c.now()))
	}
	tw.Flush()
}

func fmtMiB(mb float64) string {
	if mb == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", mb)
}

var agentRmCmd = &command{
	name:    "agent rm",
	args:    "NAME",
	summary: "unregister an agent; its queued tasks fail with agent_missing",
	minArgs: 1, maxArgs: 1,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func(args []string) error {
			raw, err := c.call(protocol.MethodAgentUnregister, protocol.NameParams{Name: args[0]})
			if err != nil {
				return err
			}
			if c.json {
				c.emit(raw)
				return nil
			}
			fmt.Fprintf(c.stdout, "removed agent %s\n", args[0])
			return nil
		}
	},
}
