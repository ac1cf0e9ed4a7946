package client_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/coder/websocket"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
)

// exampleServer answers the three methods the examples call, the way
// PROTOCOL.md says fabricd does: system.health, task.get of a task that does
// not exist, and task.subscribe followed by two task.event notifications.
func exampleServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, `{"code":-32004,"message":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var reqs []struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
			}
			batch := data[0] == '['
			if !batch {
				data = append(append([]byte{'['}, data...), ']')
			}
			json.Unmarshal(data, &reqs)
			var out []json.RawMessage
			var after [][]byte
			for _, req := range reqs {
				resp := map[string]any{"jsonrpc": "2.0", "id": req.ID}
				switch req.Method {
				case protocol.MethodSystemHealth:
					resp["result"] = protocol.Health{Status: protocol.HealthOK, Version: "example", Engine: "wazero"}
				case protocol.MethodTaskSubscribe:
					resp["result"] = protocol.SubscriptionResult{SubscriptionID: "s1"}
					for i, st := range []protocol.State{protocol.StateRunning, protocol.StateSucceeded} {
						b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": protocol.NotifyTaskEvent,
							"params": protocol.TaskEvent{SubscriptionID: "s1", Seq: int64(i + 1), TaskID: "t1", State: st, Attempt: 1}})
						after = append(after, b)
					}
				default:
					resp["error"] = protocol.Errorf(protocol.ErrNotFound, "task %q does not exist", "nope")
				}
				b, _ := json.Marshal(resp)
				out = append(out, b)
			}
			var msg []byte
			if batch {
				msg, _ = json.Marshal(out)
			} else {
				msg = out[0]
			}
			conn.Write(ctx, websocket.MessageText, msg)
			for _, b := range after {
				conn.Write(ctx, websocket.MessageText, b)
			}
		}
	}))
}

func decodeEvent(n client.Notification) (protocol.TaskEvent, error) {
	var ev protocol.TaskEvent
	if n.Method != protocol.NotifyTaskEvent {
		return ev, fmt.Errorf("want task.event; got %s", n.Method)
	}
	return ev, json.Unmarshal(n.Params, &ev)
}
