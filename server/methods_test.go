package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/internal/fixture"
)

func readAgent(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/fixtures/agents/" + name + ".wasm")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func registerMsg(t *testing.T, id int, name string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"agent.register","params":{"name":%q,"wasm":%q}}`,
		id, name, base64.StdEncoding.EncodeToString(readAgent(t, name)))
}

func field(t *testing.T, msg, path string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(msg), &v); err != nil {
		t.Fatalf("%s: %v", msg, err)
	}
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: no %s", msg, path)
		}
		v = m[k]
	}
	return v
}

// TestSubscriptionsBelongToTheirConnection: another connection cannot end a
// subscription, and a closed connection's subscriptions end with it.
func TestSubscriptionsBelongToTheirConnection(t *testing.T) {
	srv, _ := newRealServer(t, fixture.Config{})
	a := startPipe(t, srv)
	b := startPipe(t, srv)
	mustSend(t, a, `{"jsonrpc":"2.0","id":1,"method":"task.subscribe","params":{}}`)
	subID := field(t, mustRecv(t, a), "result.subscription_id").(string)
	mustSend(t, a, `{"jsonrpc":"2.0","id":2,"method":"kpi.subscribe","params":{"interval_ms":100}}`)
	kpiID := field(t, mustRecv(t, a), "result.subscription_id").(string)
	for _, id := range []string{subID, kpiID} {
		mustSend(t, b, `{"jsonrpc":"2.0","id":3,"method":"unsubscribe","params":{"subscription_id":"`+id+`"}}`)
		got := mustRecv(t, b)
		if field(t, got, "error.code") != float64(-32001) {
			t.Fatalf("unsubscribing another connection's subscription: %s", got)
		}
	}
	// Close a: its session ends and takes its subscriptions with it.
	a.conn.Close()
	if err := <-a.serve; err != nil {
		t.Fatalf("ServeStdio: %v", err)
	}
	a.serve <- nil
	waitFor(t, "a's session to end", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.sessions) == 1
	})
	// b goes on, and events reach only b's own subscription.
	mustSend(t, b, registerMsg(t, 4, "echo"))
	mustRecv(t, b)
	mustSend(t, b, `{"jsonrpc":"2.0","id":5,"method":"task.submit","params":{"agent":"echo","input":1,"subscribe":true}}`)
	// The task's first event may come before the answer that names its
	// subscription.
	var own any
	var events []string
	for done := false; !done; {
		msg := mustRecv(t, b)
		if field(t, msg, "method") == nil {
			own = field(t, msg, "result.subscription_id")
			continue
		}
		events = append(events, msg)
		done = own != nil && field(t, msg, "params.state") == "succeeded"
	}
	for _, ev := range events {
		if field(t, ev, "params.subscription_id") != own {
			t.Fatalf("an event of a subscription not b's: %s", ev)
		}
	}
}

// TestStdioEOFWaitsForTasks: a session whose input ends answers the
// requests in flight first, however long they take: "fabricd stdio <
// requests" hears every answer. (Requests of one connection run
// concurrently, so each step that needs the previous one is its own
// session here.)
func TestStdioEOFWaitsForTasks(t *testing.T) {
	srv, _ := newRealServer(t, fixture.Config{})
	session := func(lines ...string) []string {
		t.Helper()
		in := strings.NewReader(strings.Join(lines, "\n") + "\n")
		var out bytes.Buffer
		if err := srv.ServeStdio(context.Background(), in, &out); err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(out.String()), "\n")
	}
	session(registerMsg(t, 1, "spin"), registerMsg(t, 2, "echo"))
	got := session(`{"jsonrpc":"2.0","id":3,"method":"task.submit","params":{"agent":"spin","timeout_ms":300,"max_retries":0}}`,
		`{"jsonrpc":"2.0","id":4,"method":"task.submit","params":{"agent":"echo","input":"x"}}`)
	ids := map[float64]string{}
	for _, l := range got {
		ids[field(t, l, "id").(float64)] = field(t, l, "result.task_id").(string)
	}
	got = session(`{"jsonrpc":"2.0","id":5,"method":"task.wait","params":{"task_id":"`+ids[3]+`"}}`,
		`{"jsonrpc":"2.0","id":6,"method":"task.wait","params":{"task_id":"`+ids[4]+`"}}`)
	if len(got) != 2 {
		t.Fatalf("answers: %q", got)
	}
	for _, l := range got {
		switch field(t, l, "id") {
		case float64(5):
			if field(t, l, "result.state") != "failed" || field(t, l, "result.error.code") != "timeout" {
				t.Errorf("the spinning task: %s", l)
			}
		case float64(6):
			if field(t, l, "result.state") != "succeeded" || field(t, l, "result.result.output") != "x" {
				t.Errorf("the echo task: %s", l)
			}
		}
	}
}

// The scheduler's lines about a request carry its connection and request
// id, at whatever level they are written; the request's logger is built
// only when they are.
func TestRequestLogLines(t *testing.T) {
	for _, level := range []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel} {
		t.Run(level.String(), func(t *testing.T) {
			_, sc := newRealServer(t, fixture.Config{})
			logs := &logBuffer{}
			srv := New(Config{Sched: sc, Logger: zerolog.New(logs).Level(level), StoreNeverWaits: true})
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
				defer cancel()
				srv.Shutdown(ctx)
			})
			c := startPipe(t, srv)
			mustSend(t, c, registerMsg(t, 41, "echo"))
			mustRecv(t, c)
			mustSend(t, c, `{"jsonrpc":"2.0","id":"s-42","method":"task.submit","params":{"agent":"echo","input":1}}`)
			mustRecv(t, c)
			want := map[string]string{"agent registered": `41`}
			if level == zerolog.DebugLevel {
				want["task accepted"] = `"s-42"`
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			for msg, id := range want {
				found := false
				for _, l := range lines {
					if strings.Contains(l, `"message":"`+msg+`"`) {
						found = true
						if !strings.Contains(l, `"request_id":`+id) || !strings.Contains(l, `"conn":`) {
							t.Errorf("%q without its request_id %s or conn: %s", msg, id, l)
						}
					}
				}
				if !found {
					t.Errorf("no %q line in:\n%s", msg, logs.String())
				}
			}
		})
	}
}
