package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/internal/fabricdtest"
	"github.com/chimera-fabric/fabric/protocol"
)

// End-to-end tests: the real fabricd binary, talked to over a real WebSocket
// and a real pipe, as a client would.

func agentFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "agents", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dial(t testing.TB, s *fabricdtest.Server, opts ...client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var o client.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	c, err := client.Dial(ctx, s.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(t testing.TB, c *client.Client, method string, params, result any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Call(ctx, method, params, result); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

func register(t testing.TB, c *client.Client, name, file string) {
	t.Helper()
	var a protocol.Agent
	call(t, c, "agent.register", map[string]any{"name": name, "wasm": agentFile(t, file)}, &a)
}

func TestServeSessionOverWebSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	s := fabricdtest.Start(t, "--data", ":memory:", "--workers", "2")
	c := dial(t, s)
	register(t, c, "echo", "echo")

	var sub protocol.SubmitResult
	call(t, c, "task.submit", map[string]any{"agent": "echo", "input": map[string]any{"hello": "fabric"}, "subscribe": true}, &sub)
	if !sub.Created || sub.SubscriptionID == "" {
		t.Fatalf("submit: %+v", sub)
	}
	var states []protocol.State
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case n := <-c.Notifications():
			if n.Method != "task.event" {
				continue
			}
			var ev protocol.TaskEvent
			if err := json.Unmarshal(n.Params, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.SubscriptionID != sub.SubscriptionID || ev.TaskID != sub.TaskID {
				t.Fatalf("event for another subscription: %+v", ev)
			}
			states = append(states, ev.State)
			if ev.State.Terminal() {
				done = true
				if string(ev.Result.Output) != `{"hello":"fabric"}` {
					t.Fatalf("output %s", ev.Result.Output)
				}
			}
		case <-deadline:
			t.Fatalf("events so far %v", states)
		}
	}
	if fmt.Sprint(states) != "[queued running succeeded]" {
		t.Fatalf("events %v", states)
	}
	var task protocol.Task
	call(t, c, "task.wait", map[string]any{"task_id": sub.TaskID}, &task)
	if task.State != protocol.StateSucceeded {
		t.Fatalf("%+v", task)
	}

	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "fabric_tasks_finished_total"} {
		resp, err := http.Get("http://" + s.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %.200s", path, resp.StatusCode, body)
		}
	}
}

// TestHostileAgentsKeepServerServing runs the sandbox's bad cases through
// the real server: each gets its documented outcome and the server goes on.
func TestHostileAgentsKeepServerServing(t *testing.T) {
	hostileAgents(t, "wazero")
}

func hostileAgents(t *testing.T, engine string) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	s := fabricdtest.Start(t, "--data", ":memory:", "--workers", "2", "--engine", engine)
	c := dial(t, s)

	cases := []struct {
		agent  string
		params map[string]any
		code   string
	}{
		{"loop", map[string]any{"timeout_ms": 300}, protocol.CodeTimeout},
		{"membomb", map[string]any{"quota": map[string]any{"memory_mb": 16}}, protocol.CodeMemoryLimit},
		{"recurse", nil, protocol.CodeTrap},
		{"outflood", map[string]any{"quota": map[string]any{"output_bytes": 4096}}, protocol.CodeOutputLimit},
		{"fib", map[string]any{"timeout_ms": 300}, protocol.CodeTimeout},
	}
	ids := map[string]string{}
	for _, tc := range cases {
		register(t, c, tc.agent, tc.agent)
		p := map[string]any{"agent": tc.agent, "max_retries": 0}
		for k, v := range tc.params {
			p[k] = v
		}
		var r protocol.SubmitResult
		call(t, c, "task.submit", p, &r)
		ids[tc.agent] = r.TaskID
	}
	for _, tc := range cases {
		var task protocol.Task
		call(t, c, "task.wait", map[string]any{"task_id": ids[tc.agent], "timeout_ms": 60000}, &task)
		if task.State != protocol.StateFailed || task.Error == nil || task.Error.Code != tc.code {
			t.Errorf("%s: %s %+v, want failed with %s", tc.agent, task.State, task.Error, tc.code)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Call(ctx, "agent.register", map[string]any{"name": "forbidden", "wasm": agentFile(t, "forbidden")}, nil)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != -32003 || !strings.Contains(pe.Message, "env.socket") {
		t.Errorf("forbidden import: %v", err)
	}
	err = c.Call(ctx, "agent.register", map[string]any{"name": "junk", "wasm": []byte("\x00asm\x01\x00\x00\x00\x01")}, nil)
	if !errors.As(err, &pe) || pe.Code != -32003 {
		t.Errorf("truncated module: %v", err)
	}

	// Still serving.
	register(t, c, "echo", "echo")
	var r protocol.SubmitResult
	call(t, c, "task.submit", map[string]any{"agent": "echo", "input": 42}, &r)
	var task protocol.Task
	call(t, c, "task.wait", map[string]any{"task_id": r.TaskID}, &task)
	if task.State != protocol.StateSucceeded || string(task.Result.Output) != "42" {
		t.Fatalf("after the hostile agents: %+v", task)
	}
}

// TestStdioBothFramings pipes requests to `fabricd stdio` as a local tool
// would, in newline-delimited JSON and in Content-Length frames.
func TestStdioBothFramings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	echo := agentFile(t, "echo")
	reg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "agent.register", "params": map[string]any{"name": "echo", "wasm": echo}})
	msgs := []string{
		string(reg),
		`{"jsonrpc":"2.0","id":2,"method":"task.submit","params":{"agent":"echo","input":[1,2,3],"idempotency_key":"k"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"task.submit","params":{"agent":"echo","input":[1,2,3],"idempotency_key":"k"}}`,
		`[{"jsonrpc":"2.0","id":4,"method":"system.health"},{"jsonrpc":"2.0","method":"system.health"},{"jsonrpc":"2.0","id":5,"method":"nope"}]`,
		`{"jsonrpc":"2.0","id":6,"method":"task.list","params":{}}`,
	}
	for _, framing := range []string{"ndjson", "lsp"} {
		t.Run(framing, func(t *testing.T) {
			cmd := exec.Command(fabricdtest.Binary(t), "stdio", "--data", ":memory:", "--log-format", "json")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			r := bufio.NewReader(stdout)
			send := func(m string) {
				if framing == "lsp" {
					fmt.Fprintf(stdin, "Content-Length: %d\r\n\r\n%s", len(m), m)
				} else {
					io.WriteString(stdin, m+"\n")
				}
			}
			// Responses may come in any order (PROTOCOL.md), so a request
			// that depends on another is sent once that one is answered.
			byID := map[string]json.RawMessage{}
			for i, m := range msgs {
				send(m)
				reply := readReply(t, framing, r)
				var batch []json.RawMessage
				if json.Unmarshal(reply, &batch) == nil {
					if len(batch) != 2 {
						t.Errorf("batch reply of %d, want 2 (no reply to the notification): %s", len(batch), reply)
					}
					for _, b := range batch {
						byID[idOf(t, b)] = b
					}
					continue
				}
				if got := idOf(t, reply); got != fmt.Sprint(i+1) && i != 4 {
					t.Fatalf("reply %s to request %d", reply, i+1)
				}
				byID[idOf(t, reply)] = reply
			}
			stdin.Close()
			if rest, _ := io.ReadAll(r); len(strings.TrimSpace(string(rest))) > 0 {
				t.Errorf("unexpected output after the last reply: %s", rest)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("fabricd stdio exit: %v\n%s", err, stderr.String())
			}
			for _, id := range []string{"1", "2", "3", "4", "5", "6"} {
				if byID[id] == nil {
					t.Fatalf("no reply to id %s", id)
				}
			}
			var r2, r3 struct{ Result protocol.SubmitResult }
			json.Unmarshal(byID["2"], &r2)
			json.Unmarshal(byID["3"], &r3)
			if r2.Result.TaskID == "" || r2.Result.TaskID != r3.Result.TaskID || r3.Result.Created {
				t.Errorf("idempotent submit: %s / %s", byID["2"], byID["3"])
			}
			if !strings.Contains(string(byID["5"]), `"code":-32601`) {
				t.Errorf("unknown method: %s", byID["5"])
			}
		})
	}
}

func idOf(t *testing.T, msg json.RawMessage) string {
	var m struct{ ID json.RawMessage }
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatalf("reply %s: %v", msg, err)
	}
	return string(m.ID)
}

// readReply reads one message in the given framing.
func readReply(t *testing.T, framing string, r *bufio.Reader) json.RawMessage {
	t.Helper()
	if framing == "ndjson" {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reading a reply: %v (%q)", err, line)
		}
		if !json.Valid(line) {
			t.Fatalf("stdout carries more than JSON-RPC: %q", line)
		}
		return line
	}
	var n int
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	if _, err := fmt.Sscanf(line, "Content-Length: %d", &n); err != nil {
		t.Fatalf("bad header %q", line)
	}
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if h == "\r\n" {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	return body
}
